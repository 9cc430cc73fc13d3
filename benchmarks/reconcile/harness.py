"""Bench: one run's state (the cluster, the operator, the watchers, the figures), a burst
measured on either side (run_burst, run_baseline), the operator's work, and the report.
The phases themselves are in scenarios/."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from localcluster import LocalCluster

from . import ROOT
from .apiserver import apiserver_requests, writes_between
from .baselines import PlainController, burst
from .cluster import ClusterSetup
from .config import API_QUIET_TIMEOUT_S, CONCURRENCY, COUNTED_RESOURCES, QUIET_S, BenchError, log
from .figures import _le, latencies, ms, percentile, process_cpu_s
from .objects import child_kinds, spec_of
from .operator_process import Operator
from .results import plot_curves
from .watch import Watcher


class Bench(ClusterSetup):
    """One run of the scenarios. `code`: the checkout whose source roots the operator
    process runs (this one unless --code names another)."""

    def __init__(self, args: argparse.Namespace, code: Path = ROOT):
        self.args = args
        self.code = code
        self.work = Path(tempfile.mkdtemp(prefix="llmop-bench-"))
        self.out = Path(args.out)
        self.cluster: LocalCluster | None = None
        self.operator: Operator | None = None
        self.watchers: list[Watcher] = []
        self.figures: dict = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "sizes": {
                "latency_n": args.n_latency,
                "throughput_n": args.n,
                "ready_n": args.n_ready,
                "populated_n": args.n_populated,
                "others_n": args.n_others,
                "replicas": args.replicas,
                "concurrency": CONCURRENCY,
            },
        }
        self.curves: dict[str, list[tuple[int, float]]] = {}
        self.objects = 0

    def teardown(self) -> None:
        for w in self.watchers:
            w.close()
        if self.operator is not None:
            self.operator.stop()
            shutil.copy(self.operator.log_path, self.out / "operator.log")
        if self.cluster is not None:
            try:
                self.cluster.down()
            except Exception as err:  # noqa: BLE001 - report, and go on removing what we can
                print(f"bench: stopping the control plane: {err}", file=sys.stderr)
        if self.args.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # -- helpers
    def watch(self, namespace: str, spec: dict, names: list[str], mode: str) -> Watcher:
        w = Watcher(self.raw, namespace, child_kinds(spec), names, mode)
        self.watchers.append(w)
        return w

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds so far of each control-plane process, the operator (when running), the
        event watcher and this process (its client threads: the baselines' applies)."""
        pids = dict(self.cluster.running_pids()) if self.cluster is not None else {}
        if self.operator is not None and self.operator.proc is not None:
            pids["operator"] = self.operator.pid
        pids.update({f"watcher-{i}": w.proc.pid for i, w in enumerate(self.watchers) if w.proc.pid})
        out = {name: process_cpu_s(pid) for name, pid in pids.items()}
        out["benchmark"] = process_cpu_s(os.getpid())
        return {k: v for k, v in out.items() if v is not None}

    def counted_requests(self) -> dict[tuple[str, str, str, str], float]:
        return {k: v for k, v in apiserver_requests(self.raw).items() if k[1] in COUNTED_RESOURCES}

    def wait_api_quiet(self, timeout: float = API_QUIET_TIMEOUT_S) -> float | None:
        """Wait until no counted request (see COUNTED_RESOURCES) has reached the apiserver for
        QUIET_S seconds: the controller manager's follow-up writes are in. Returns the seconds
        until the last one, None if it was never quiet within `timeout`."""
        started = time.monotonic()
        last, last_change = None, started
        while time.monotonic() - started < timeout:
            snap = self.counted_requests()
            now = time.monotonic()
            if snap != last:
                last, last_change = snap, now
            elif now - last_change >= QUIET_S:
                return round(last_change - started, 1)
            time.sleep(1)
        log(f"  note: requests to the apiserver did not stop for {QUIET_S:.0f}s within {timeout:.0f}s")
        return None

    def settle(self, timeout: float | None = None) -> None:
        """The operator (when running) and then the apiserver quiet: nothing of the last
        phase is left to be counted in the next."""
        if self.operator is not None:
            self.operator.wait_quiet(
                self.operator.metrics().get("llm_operator_reconciles_total", 0), timeout or self.args.timeout
            )
        self.wait_api_quiet()

    def run_burst(
        self,
        namespace: str,
        n: int,
        spec: dict,
        mode: str,
        apply_children: bool,
        label: str,
        prefix: str = "m-",
        queued: bool = False,
        report: bool = False,
    ) -> dict:
        names = [f"{prefix}{i:04d}" for i in range(n)]
        self.wait_controllers()
        w = self.watch(namespace, spec, names, mode)
        requests_before = apiserver_requests(self.raw)
        cpu_before = self.cpu_by_process()
        uptime_before = self.operator.uptime() if self.operator is not None else None
        controller = PlainController(self.raw, self.kube, namespace, names, spec, report) if queued else None
        start, client_end = burst(
            self.kube,
            namespace,
            names,
            spec,
            apply_children,
            controller,
            self.args.timeout,
            report=report and not queued,
        )
        timeout = self.args.timeout
        complete = w.wait_done(timeout)
        cpu_after = self.cpu_by_process()
        rec = w.results()
        self.watchers.remove(w)
        api_quiet_s = None
        if complete:
            # Let the follow-up work (status events, the operator's later reconciles, the
            # controller manager's ReplicaSets and status updates) finish, then count every
            # request the burst caused, by resource and verb: the same wait on both sides.
            if self.operator is not None:
                self.operator.wait_quiet(self.operator.metrics().get("llm_operator_reconciles_total", 0), timeout)
            api_quiet_s = self.wait_api_quiet()
        requests = writes_between(requests_before, apiserver_requests(self.raw))
        counted = {k: v for k, v in requests.items() if k.split("/")[0].split(" ")[0] in COUNTED_RESOURCES}
        requests = {k: round(v / n, 2) for k, v in counted.items()}
        done = [rec["done"][x] for x in names if x in rec["done"]]
        lat = latencies(rec, names)
        # The curve: latency of each object against how many had been created before it.
        order = sorted(lat, key=lambda x: rec["created"][x])
        self.curves[label] = [(i + 1, lat[x]) for i, x in enumerate(order)]
        # A burst that did not finish has no wall time (a partial one would flatter it).
        wall = (max(done) - start) if complete and done else None
        out = {
            "n": n,
            "completed": len(done),
            "complete": complete,
            "wall_s": round(wall, 2) if wall is not None else None,
            "create_calls_s": round(client_end - start, 2),
            "p50_ms": ms(percentile(list(lat.values()), 50)),
            "p99_ms": ms(percentile(list(lat.values()), 99)),
            "max_ms": ms(max(lat.values()) if lat else None),
            "children_p50_ms": ms(percentile(list(latencies(rec, names, "children_done").values()), 50)),
            "children_p99_ms": ms(percentile(list(latencies(rec, names, "children_done").values()), 99)),
            "watch_events": rec["events"],
            "api_requests_total": round(sum(counted.values())),
            "api_requests_per_object": round(sum(counted.values()) / n, 2),
            "api_requests_per_object_by_kind": requests,
            "api_quiet_after_s": api_quiet_s,
        }
        if wall:
            # Where the machine's CPU went from the first create to the last object done: on
            # os.cpu_count() CPUs, a busy share near 1 means the burst was CPU-bound.
            cpu = {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_after if k in cpu_before}
            out["cpu_s_by_process"] = cpu
            out["machine_busy_share"] = round(sum(cpu.values()) / (wall * (os.cpu_count() or 1)), 2)
        if uptime_before is not None:
            # The operator's periodic resync (every few minutes) reads every object: a burst
            # that overlaps one counts its requests too.
            out["operator_uptime_s"] = [uptime_before, self.operator.uptime()]
        if not complete:
            self.figures.setdefault("incomplete", {})[label] = out
            tail = self.operator.log_tail(1500) if self.operator else ""
            raise BenchError(f"{label}: only {len(done)}/{n} done within {timeout:.0f}s; operator log tail:\n{tail}")
        return out

    # -- one baseline burst (the baselines themselves: scenarios/baselines.py)
    def run_baseline(self, key: str, name: str, namespace: str, n: int, how: str, mode: str, **burst_args) -> dict:
        """One baseline burst, no operator running: `how` says what the plain client does."""
        log(f"{name}: {n} LLMDeployments {how}, {CONCURRENCY} threads, no operator")
        r = self.run_burst(
            namespace, n, spec_of(1, self.args.replicas), mode, label=f"{name}, {n} at once", **burst_args
        )
        self.figures[key] = r
        log(
            f"  {name}: {n} in {r['wall_s']}s wall; per object p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; "
            f"{r['api_requests_total']} requests ({r['api_requests_per_object']} per object): "
            f"{r['api_requests_per_object_by_kind']}"
        )
        return r

    def operator_work(self, before: dict, n: int) -> dict:
        after = self.operator.metrics()
        d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        count = d.get("llm_operator_reconcile_duration_seconds_count", 0)
        return {
            "reconciles_per_object": round(d.get("llm_operator_reconciles_total", 0) / n, 2),
            "operator_writes_per_object": round(d.get("llm_operator_writes_total", 0) / n, 2),
            "mean_reconcile_ms": ms(d.get("llm_operator_reconcile_duration_seconds_sum", 0) / count) if count else None,
            # CPU the operator process spent (prometheus_client's process collector): on a
            # 2-CPU machine it is taken from the apiserver's share.
            "operator_cpu_ms_per_object": round(1000 * d.get("process_cpu_seconds_total", 0) / n, 2),
        }

    # -- output
    def report(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        f = self.figures
        thr, lat, mem = f.get("throughput", {}), f.get("latency", {}), f.get("memory", {})
        pop, base = f.get("populated", {}), f.get("baseline", {})
        # (key, what, the figure, the limit): each figure <= its limit.
        rows = [
            (
                "throughput_ratio<=1.2",
                f"{self.args.n} at once -> all reconciled, wall time / baseline's",
                thr.get("ratio_to_baseline"),
                1.2,
            ),
            (
                "throughput_ratio_same_writes<=1.2",
                "the same wall time / the same-writes baseline's "
                f"({f.get('baseline_same_writes', {}).get('wall_s')} s; not a target of performance.md: see README)",
                thr.get("ratio_to_same_writes_baseline"),
                1.2,
            ),
            (
                "api_requests_ratio<=1.5",
                f"API requests per object in that burst / baseline's "
                f"({thr.get('api_requests_per_object')} vs {base.get('api_requests_per_object')})",
                thr.get("api_requests_ratio_to_baseline"),
                1.5,
            ),
            (
                "latency_p99_ratio<=2",
                f"p99 latency, {self.args.n_latency} at once / baseline's "
                f"({lat.get('p99_ms')} ms vs {f.get('baseline_latency', {}).get('p99_ms')} ms)",
                lat.get("p99_ratio_to_baseline"),
                2,
            ),
            (
                "latency_p99_ratio_queued<=2",
                f"the same p99 / the queued baseline's "
                f"({f.get('baseline_queued', {}).get('p99_ms')} ms; not a target of performance.md: see README)",
                lat.get("p99_ratio_to_queued_baseline"),
                2,
            ),
            (
                "latency_p99_ratio_queued_same_writes<=2",
                "the same p99 / the queued same-writes baseline's "
                f"({f.get('baseline_queued_same_writes', {}).get('p99_ms')} ms; not a target of performance.md: see README)",
                lat.get("p99_ratio_to_queued_same_writes_baseline"),
                2,
            ),
            (
                "memory_burst_hwm_mib<=200",
                f"operator VmHWM, MiB, in the {self.args.n} burst ({mem.get('objects')} objects held)",
                mem.get("burst_VmHWM_mib"),
                200,
            ),
            (
                "memory_settled_rss_mib<=150",
                "operator VmRSS, MiB, settled after that burst",
                mem.get("settled_VmRSS_mib"),
                150,
            ),
            (
                "resync_writes_per_object==0",
                "writes per LLMDeployment on a resync where nothing changed",
                f.get("resync", {}).get("writes_per_llmdeployment"),
                0,
            ),
            (
                "populated_requests_ratio<=1.1",
                f"requests per object with {self.args.n_others} others in the "
                f"namespace / in an empty one ({pop.get('burst', {}).get('api_requests_per_object')} vs "
                f"{pop.get('reference', {}).get('api_requests_per_object')})",
                pop.get("api_requests_ratio_to_reference"),
                1.1,
            ),
            (
                "ready_p50_ms<=2000",
                f"apply -> Ready, {self.args.n_ready} at once, p50 ms",
                f.get("ready", {}).get("p50_ms"),
                2000,
            ),
        ]
        targets = {key: _le(value, limit) for key, _, value, limit in rows}
        f["targets_met"] = targets
        print()
        print("figures (targets from shared/reference/performance.md; informational, never asserted):")
        for key, what, value, limit in rows:
            verdict = {True: "met", False: "NOT met", None: "not measured"}[targets[key]]
            print(f"  {what}: {value if value is not None else '-'} (target <= {limit}): {verdict}")
        self.plot()
        line = json.dumps(f, sort_keys=True)
        (self.out / "results.json").write_text(line + "\n")
        print(line, flush=True)

    def plot(self) -> None:
        (self.out / "curves.json").write_text(json.dumps(self.curves))
        plot_curves(self.curves, self.out)

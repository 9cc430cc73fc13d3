#!/usr/bin/env python3
"""Reconcile latency, throughput, resync writes and memory of llm-operator, measured on
the local control plane against a raw-apply baseline (shared/reference/performance.md).

    python benchmarks/bench_reconcile.py [--quick] [--n-latency 200] [--n 1000] [--out benchmarks/out]

It starts its own control plane (hack/localcluster.py) in a temporary directory, runs the
operator as a real process against it, prints what it measured, and writes one JSON line
of figures to OUT/results.json (and OUT/latency.png when matplotlib is importable). It
never asserts a time: the figures are for reading, and comparing with the targets.
Everything it starts is stopped on the way out, Ctrl-C and failures included.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import multiprocessing as mp
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "hack", ROOT / "common", ROOT / "operator", ROOT / "runtime"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from localcluster import LocalCluster, free_port, tools_dir  # noqa: E402

from llm_operator import api
from llm_operator.decide import manifests as resources  # noqa: E402
from llm_operator.kube.client import Kube, KubeError  # noqa: E402

MODEL_ID = "mistralai/Mistral-7B-Instruct-v0.2"
# The operator applies its children from 16 threads (handlers.configure: max_workers);
# the burst of creations and the baseline use as many.
CONCURRENCY = 16
# Enough GPUs for the Ready burst (one GPU per model): the cluster's own plus 6 x 8 H100s.
EXTRA_H100_NODES = 6
# Resources whose writes count as the operator's (its children, its objects, its Events).
OPERATOR_RESOURCES = {"llmdeployments", "services", "deployments", "poddisruptionbudgets", "jobs",
                      "persistentvolumeclaims", "horizontalpodautoscalers", "events"}
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}
QUIET_S = 5.0
CONTROLLER_QPS = 500
# Resources whose requests (reads and writes) a burst's figures count, per object: the
# operator's, and what the controller manager does for its children (ReplicaSets, Pods,
# the Services' Endpoints and EndpointSlices), on both sides.
COUNTED_RESOURCES = OPERATOR_RESOURCES | {"pods", "replicasets", "endpoints", "endpointslices"}
# After a burst's objects are all seen: how long the counted requests must stand still
# before they are read (the controller manager's follow-up writes come in that time).
API_QUIET_TIMEOUT_S = 120
# How long the operator must have been quiet before its memory counts as settled.
SETTLE_S = 10.0
# Where the operator watches (it must not touch the baseline's namespaces).
OPERATOR_NAMESPACES = ["bench-latency", "bench-throughput", "bench-ready", "bench-profile",
                       "bench-reference", "bench-populated"]
BASELINE_NAMESPACES = ["bench-base", "bench-base-latency", "bench-base-queued", "bench-base-writes",
                       "bench-base-queued-writes"]
EXTRA_SERVICE_CIDR = """apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: bench-extra}
spec: {cidrs: ["10.96.0.0/16"]}
"""


class BenchError(RuntimeError):
    """Something the benchmark needs did not happen; the message says what."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- raw HTTPS to the apiserver (watches and /metrics, outside the kubernetes client) ---
class Raw:
    """The apiserver over plain http.client with the admin certificate: light enough to
    record watch arrival times without the client's model decoding in the way."""

    def __init__(self, server: str, ca: str, cert: str, key: str):
        self.server, self.ca, self.cert, self.key = server, ca, cert, key
        u = urlparse(server)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.load_cert_chain(cert, key)

    @classmethod
    def of(cls, cluster: LocalCluster) -> "Raw":
        p = cluster.pki
        return cls(cluster.server, str(p / "ca.crt"), str(p / "admin.crt"), str(p / "admin.key"))

    def args(self) -> tuple[str, str, str, str]:
        return self.server, self.ca, self.cert, self.key

    def open(self, path: str, timeout: float, accept: str = "application/json") -> tuple[http.client.HTTPSConnection, http.client.HTTPResponse]:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        conn.request("GET", path, headers={"Accept": accept})
        resp = conn.getresponse()
        if resp.status != 200:
            body = resp.read()[:500]
            conn.close()
            raise BenchError(f"GET {path}: {resp.status} {body!r}")
        return conn, resp

    def get(self, path: str, timeout: float = 30, accept: str = "application/json") -> bytes:
        conn, resp = self.open(path, timeout, accept)
        try:
            return resp.read()
        finally:
            conn.close()


def count_objects(raw: Raw, path: str) -> int:
    """How many objects a cluster-wide list holds, reading metadata only."""
    body = raw.get(path, timeout=120, accept="application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
    return len(json.loads(body).get("items") or [])


class BenchCluster(LocalCluster):
    """The local control plane, with the controller manager's client rate limit raised:
    at its default (20 requests/s) its Deployment controller needs minutes to catch up
    with a burst of 1,000 Deployments, and every later measurement would wait behind it."""

    def _spawn(self, name: str, args: list[str]):
        if name == "kube-controller-manager":
            args = [*args, f"--kube-api-qps={CONTROLLER_QPS}", f"--kube-api-burst={2 * CONTROLLER_QPS}"]
        return super()._spawn(name, args)


def apiserver_requests(raw: Raw, verbs: set[str] | None = None) -> dict[tuple[str, str, str, str], float]:
    """apiserver_request_total (of `verbs`, or all but WATCH), by (group, resource, subresource, verb)."""
    out: dict[tuple[str, str, str, str], float] = {}
    for line in raw.get("/metrics", timeout=60).decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[:line.rindex("}")]))
        verb = labels.get("verb", "")
        if (verbs is not None and verb not in verbs) or verb == "WATCH":
            continue
        key = (labels.get("group", ""), labels.get("resource", ""), labels.get("subresource", ""), verb)
        out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return out


def apiserver_writes(raw: Raw) -> dict[tuple[str, str, str, str], float]:
    return apiserver_requests(raw, WRITE_VERBS)


def writes_between(before: dict, after: dict, keep=lambda key: True) -> dict[str, float]:
    """Requests per 'resource[/sub] (group) VERB' between two snapshots (nonzero, and `keep(key)`)."""
    out: dict[str, float] = {}
    for key in set(before) | set(after):
        n = after.get(key, 0) - before.get(key, 0)
        if n and keep(key):
            group, res, sub, verb = key
            name = f"{res}{'/' + sub if sub else ''}{' (' + group + ')' if group else ''} {verb}"
            out[name] = out.get(name, 0) + n
    return dict(sorted(out.items()))


def operator_side(key: tuple[str, str, str, str]) -> bool:
    """A write the operator could have made: not a controller's status update of a child,
    not an events.k8s.io Event (the operator posts core/v1 Events)."""
    group, res, sub, _ = key
    if res not in OPERATOR_RESOURCES or group == "events.k8s.io":
        return False
    return not sub or res == api.PLURAL


# ---- the watcher: a process of its own, so arrival times do not wait on our GIL ---------
def _watch_process(raw_args, namespace: str, child_paths: dict[str, str], names: list[str], mode: str,
                   ready_evt, done_evt, stop_evt, conn) -> None:
    """Watch the LLMDeployments and their children in `namespace`, record when (monotonic,
    comparable across processes) each of `names` was first seen, its children first seen, its
    status first current (observedGeneration == generation) and first Ready; set `done_evt`
    once all of `names` are done in `mode` (children | reconciled | ready). Other objects
    of the namespace (those there before the burst) are ignored."""
    raw = Raw(*raw_args)
    wanted = set(names)
    expect = len(wanted)
    lock = threading.Lock()
    rec: dict[str, dict] = {"created": {}, "children": {}, "children_done": {}, "current": {}, "ready": {}, "done": {}}
    n_events = [0]
    kinds = set(child_paths)

    def check(name: str, t: float) -> None:
        if name in rec["done"] or name not in rec["created"] or name not in wanted:
            return
        have_children = kinds <= set(rec["children"].get(name, {}))
        if have_children:
            rec["children_done"].setdefault(name, t)
        ok = {"children": have_children,
              "reconciled": have_children and name in rec["current"],
              "ready": name in rec["ready"]}[mode]
        if ok:
            rec["done"][name] = t
            if len(rec["done"]) >= expect:
                done_evt.set()

    def on_owner(t: float, typ: str, obj: dict) -> None:
        meta = obj["metadata"]
        name = meta["name"]
        if name not in wanted:
            return
        rec["created"].setdefault(name, t)
        st = obj.get("status") or {}
        if st.get("observedGeneration") is not None and st.get("observedGeneration") == meta.get("generation"):
            rec["current"].setdefault(name, t)
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []):
            rec["ready"].setdefault(name, t)
        check(name, t)

    def on_child(kind: str):
        def handle(t: float, typ: str, obj: dict) -> None:
            owner = (obj["metadata"].get("labels") or {}).get(resources.INSTANCE_LABEL)
            if owner in wanted and typ != "DELETED":
                rec["children"].setdefault(owner, {}).setdefault(kind, t)
                check(owner, t)
        return handle

    def stream(path: str, rv: str, handle) -> None:
        while not stop_evt.is_set():
            query = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": "1800"}
            sep = "&" if "?" in path else "?"
            try:
                c, resp = raw.open(f"{path}{sep}{urlencode(query)}", timeout=120)
                while True:
                    line = resp.readline()
                    t = time.monotonic()
                    if not line:
                        break
                    ev = json.loads(line)
                    typ, obj = ev["type"], ev["object"]
                    if typ == "ERROR":
                        print(f"watch {path}: {obj.get('message')}", file=sys.stderr)
                        return
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if typ == "BOOKMARK":
                        continue
                    with lock:
                        n_events[0] += 1
                        handle(t, typ, obj)
                c.close()
            except (OSError, http.client.HTTPException) as err:   # a timeout or a dropped stream: go on from rv
                if not stop_evt.is_set():
                    print(f"watch {path}: {err!r}; reconnecting", file=sys.stderr)
                    time.sleep(0.2)

    owner_path = Kube.path(api.API_VERSION, api.KIND, namespace)
    selector = urlencode({"labelSelector": f"app.kubernetes.io/managed-by={resources.MANAGED_BY}"})
    streams = [(owner_path, on_owner)] + [(f"{p}?{selector}", on_child(k)) for k, p in child_paths.items()]
    for path, handle in streams:
        sep = "&" if "?" in path else "?"
        rv = json.loads(raw.get(f"{path}{sep}limit=1"))["metadata"]["resourceVersion"]
        threading.Thread(target=stream, args=(path, rv, handle), daemon=True).start()
    ready_evt.set()
    stop_evt.wait()
    with lock:
        conn.send({**rec, "events": n_events[0]})
    conn.close()


class EventLog:
    """Every change to a kind's objects from now on, cluster-wide, in this process: what each
    event changed in status (to tell a write that changed nothing from one reverted later)."""

    def __init__(self, raw: Raw, path: str, statuses: dict[str, dict]):
        self.raw, self.path, self.last = raw, path, dict(statuses)
        self.events: list[dict] = []
        self.rv = json.loads(raw.get(f"{path}?limit=1"))["metadata"]["resourceVersion"]
        self.conn = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.conn, resp = self.raw.open(f"{self.path}?watch=1&resourceVersion={self.rv}", timeout=None)
            for line in resp:
                ev = json.loads(line)
                obj = ev["object"]
                key = f"{obj['metadata'].get('namespace')}/{obj['metadata'].get('name')}"
                st = obj.get("status") or {}
                old = self.last.get(key, {})
                self.events.append({"object": key, "type": ev["type"],
                                    "status_fields_changed": sorted(k for k in set(st) | set(old) if st.get(k) != old.get(k))})
                self.last[key] = st
        except (OSError, ValueError, http.client.HTTPException):
            return   # shut down by stop()
        finally:
            if self.conn is not None:
                self.conn.close()

    def stop(self) -> dict:
        time.sleep(1)   # the last events are on their way
        if self.conn is not None and self.conn.sock is not None:
            # shutdown, not close: close would wait for the reading thread's buffer lock.
            try:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(10)
        return {"count": len(self.events), "examples": self.events[:10]}


class Watcher:
    """Runs _watch_process and hands back what it recorded."""

    def __init__(self, raw: Raw, namespace: str, child_kinds: list[tuple[str, str]], names: list[str], mode: str):
        ctx = mp.get_context("spawn")
        self.ready, self.done, self.stop_evt = ctx.Event(), ctx.Event(), ctx.Event()
        self.parent, child = ctx.Pipe(duplex=False)
        paths = {kind: Kube.path(av, kind, namespace) for av, kind in child_kinds}
        self.proc = ctx.Process(target=_watch_process, daemon=True, args=(
            raw.args(), namespace, paths, list(names), mode, self.ready, self.done, self.stop_evt, child))
        self.proc.start()
        if not self.ready.wait(60):
            self.close()
            raise BenchError(f"the watcher for namespace {namespace} did not start within 60s")

    def wait_done(self, timeout: float) -> bool:
        return self.done.wait(timeout)

    def results(self, timeout: float = 60) -> dict:
        self.stop_evt.set()
        if not self.parent.poll(timeout):
            raise BenchError("the watcher sent no results")
        out = self.parent.recv()
        self.close()
        return out

    def close(self) -> None:
        self.stop_evt.set()
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


# ---- the operator as a process -----------------------------------------------------------
class Operator:
    """`llm-operator run` against the benchmark's cluster, offline from the Hub."""

    def __init__(self, cluster: LocalCluster, work: Path, namespaces: list[str]):
        self.cluster = cluster
        self.work = work
        self.namespaces = namespaces
        self.log_path = work / "operator.log"
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def env(self) -> dict[str, str]:
        """The operator's environment: ours (PATH, PYTHONPATH...), offline from the Hub, and
        this checkout's operator/ and runtime/ first on the path, ahead of any installed copy
        (an editable install of another checkout included)."""
        # No Hub: the facts read fails at once and the plan is "unknown", the user's gpus are used.
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig), "HF_HUB_OFFLINE": "1",
               "HF_HOME": str(self.work / "hf"), "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT / "common"), str(ROOT / "operator"), str(ROOT / "runtime"),
                                                        env.get("PYTHONPATH", "")] if p)
        return env

    def code(self) -> dict:
        """Which llm_operator the operator process imports (with its environment), and the
        commit of this checkout: what the figures are figures of."""
        where = subprocess.run([sys.executable, "-c", "import llm_operator; print(llm_operator.__file__)"],
                               env=self.env(), cwd=ROOT, capture_output=True, text=True, timeout=60)
        module = where.stdout.strip() or f"import failed: {where.stderr.strip()[-300:]}"

        def git(*a: str) -> str:
            r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=30)
            return r.stdout.strip()

        dirty = git("status", "--porcelain", "--", "common", "operator", "runtime")
        return {"module": module, "checkout": str(ROOT), "commit": git("rev-parse", "--short", "HEAD"),
                "operator_code_modified": bool(dirty)}

    def uptime(self) -> float:
        return round(time.monotonic() - self.started_at, 1)

    def start(self, timeout: float = 60) -> float:
        env = self.env()
        self.liveness = f"http://127.0.0.1:{free_port()}/healthz"
        self.metrics_port = free_port()
        started = self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llm_operator.cli", "run", "--namespace", ",".join(self.namespaces),
             f"--liveness={self.liveness}", f"--metrics-port={self.metrics_port}"],
            env=env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the operator exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.liveness, timeout=1) as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.2)
        raise BenchError(f"the operator's liveness endpoint did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def metrics(self) -> dict[str, float]:
        """Sums of the operator's own metrics by sample name (labels summed over)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(("llm_operator_", "process_cpu_seconds_total")) and not line.startswith("#"):
                name = line.split("{", 1)[0].split(" ", 1)[0]
                out[name] = out.get(name, 0) + float(line.rsplit(" ", 1)[1])
        return out

    def memory_mib(self) -> dict[str, float]:
        status = Path(f"/proc/{self.pid}/status").read_text()
        out = {}
        for key in ("VmRSS", "VmHWM"):
            m = re.search(rf"^{key}:\s+(\d+) kB", status, re.M)
            out[key] = round(int(m.group(1)) / 1024, 1) if m else None
        return out

    def wait_quiet(self, at_least: float, timeout: float) -> float:
        """Wait until llm_operator_reconciles_total is >= at_least and has not moved for
        QUIET_S seconds. Returns the seconds until it last moved."""
        started = time.monotonic()
        last, last_change = -1.0, started
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise BenchError(f"the operator exited with {self.proc.returncode}:\n{self.log_tail()}")
            n = self.metrics().get("llm_operator_reconciles_total", 0)
            now = time.monotonic()
            if n != last:
                last, last_change = n, now
            elif n >= at_least and now - last_change >= QUIET_S:
                return last_change - started
            time.sleep(0.5)
        raise BenchError(f"the operator did not go quiet within {timeout:.0f}s (reconciles: {last:.0f}, wanted >= {at_least:.0f})")


# ---- objects -----------------------------------------------------------------------------
def spec_of(gpus: int, replicas: int) -> dict:
    return {"model": {"id": MODEL_ID, "revision": "main"}, "gpus": gpus, "replicas": replicas}


def manifest(name: str, namespace: str, spec: dict) -> dict:
    return {"apiVersion": api.API_VERSION, "kind": api.KIND,
            "metadata": {"name": name, "namespace": namespace, "labels": {"benchmark": "reconcile"}}, "spec": spec}


def desired_for(name: str, namespace: str, uid: str, spec: dict) -> list[dict]:
    """Exactly what the operator applies for this object (same pure builder, same decisions:
    offline the plan is unknown and the user's gpus are used)."""
    parsed = api.parse_spec(spec)
    return resources.desired_children(resources.Owner(name, namespace, uid), parsed,
                                      resources.Decisions(gpus=parsed.gpus or 1))


def operator_report(created: dict, answers: list[dict]) -> tuple[dict | None, tuple]:
    """The status patch and the Events the operator writes for a new object whose children
    were just made: the operator's own pure decide() on the same facts (offline, the
    built-in catalog), so that the same-writes baseline writes what the operator writes."""
    import datetime as dt

    from llm_operator.decide import decision as decisions
    from llm_operator.facts import lookup as model_facts
    from llm_operator.controller.readmodel import Observed, trim_llmdeployment

    spec = api.parse_spec(created["spec"])
    answer = model_facts.lookup(spec.model.id, spec.model.revision, catalog=builtin_catalog(),
                                offline_reason="Reading from the Hub failed: the Hub is offline (HF_HUB_OFFLINE=1).")
    observed = decisions.with_applied(Observed(llmd=trim_llmdeployment(created)), answers, [])
    decision = decisions.decide(observed, decisions.Lookups(facts=answer), dt.datetime.now(dt.timezone.utc))
    return decision.status_patch, decision.events


@functools.cache
def builtin_catalog():
    """The catalog the operator ships (read once)."""
    from llm_operator.facts import catalog

    return catalog.builtin()


def write_report(kube: Kube, created: dict, answers: list[dict]) -> None:
    """The operator's status patch and Event for a new object, from a plain client."""
    patch, events = operator_report(created, answers)
    meta = created["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if patch is not None:
        with_retry(lambda: kube.patch_status(namespace, name, patch), f"patching the status of {name}")
    involved = {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": name, "namespace": namespace, "uid": meta["uid"]}
    for e in events:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with_retry(lambda: kube.post_event(involved, e.type, e.reason, e.message, stamp), f"posting an Event on {name}")


def child_kinds(spec: dict) -> list[tuple[str, str]]:
    return [(c["apiVersion"], c["kind"]) for c in desired_for("x", "x", "x", spec)]


def with_retry(call, what: str, tries: int = 8):
    """A call retried on 429/5xx from an overloaded apiserver (both sides go through this)."""
    for attempt in range(tries):
        try:
            return call()
        except KubeError as err:
            if err.status not in (429, 500, 503, 504) or attempt == tries - 1:
                raise BenchError(f"{what}: {err}") from err
            time.sleep(min(2.0, 0.1 * 2 ** attempt))


class PlainController:
    """The queued baselines' client: it watches the namespace's LLMDeployments and applies
    each new one's children from CONCURRENCY threads, first come first served, with nothing
    else (no read model; with `report`, the operator's status patch and Event after the
    children, else none). What an operator's latency can be compared with when the objects
    arrive faster than they can be worked off."""

    def __init__(self, raw: Raw, kube: Kube, namespace: str, names: list[str], spec: dict, report: bool = False):
        self.raw, self.kube, self.namespace, self.spec, self.report = raw, kube, namespace, spec, report
        self.wanted = set(names)
        self.queue: "queue.Queue[tuple[str, str] | None]" = queue.Queue()
        self.done = threading.Event()
        self.applied = 0
        self.last = 0.0
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.path = Kube.path(api.API_VERSION, api.KIND, namespace)
        self.rv = json.loads(raw.get(f"{self.path}?limit=1"))["metadata"]["resourceVersion"]
        self.conn = None
        threading.Thread(target=self._watch, daemon=True).start()
        self.workers = [threading.Thread(target=self._work, daemon=True) for _ in range(CONCURRENCY)]
        for t in self.workers:
            t.start()

    def _watch(self) -> None:
        try:
            self.conn, resp = self.raw.open(f"{self.path}?watch=1&resourceVersion={self.rv}", timeout=None)
            for line in resp:
                ev = json.loads(line)
                meta = ev["object"]["metadata"]
                if ev["type"] == "ADDED" and meta["name"] in self.wanted:
                    self.queue.put(ev["object"])
        except (OSError, ValueError, http.client.HTTPException):
            return   # shut down by stop()

    def _work(self) -> None:
        while (created := self.queue.get()) is not None:
            name, uid = created["metadata"]["name"], created["metadata"]["uid"]
            try:
                answers = [with_retry(lambda: self.kube.apply(child), f"applying {child['kind']}/{name}")
                           for child in desired_for(name, self.namespace, uid, self.spec)]
                if self.report:
                    write_report(self.kube, created, answers)
            except BaseException as err:  # noqa: BLE001 - handed to wait(), which raises it
                self.error = err
                self.done.set()
                return
            with self.lock:
                self.applied += 1
                self.last = time.monotonic()
                if self.applied >= len(self.wanted):
                    self.done.set()

    def wait(self, timeout: float) -> float:
        """Until every wanted object's children are applied; the monotonic time of the last apply."""
        finished = self.done.wait(timeout)
        if self.conn is not None and self.conn.sock is not None:
            try:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _ in self.workers:
            self.queue.put(None)
        if self.error is not None:
            raise BenchError(f"queued baseline: {self.error}")
        if not finished:
            raise BenchError(f"queued baseline: {self.applied}/{len(self.wanted)} applied within {timeout:.0f}s")
        return self.last


def burst(kube: Kube, namespace: str, names: list[str], spec: dict, apply_children: bool,
          controller: "PlainController | None" = None, timeout: float = 600,
          report: bool = False) -> tuple[float, float]:
    """Create every LLMDeployment from CONCURRENCY threads (and, for the baseline, apply its
    children right after; for the queued baseline, `controller` applies them as they come).
    With `report` (the same-writes baseline), each object's status patch and Event follow its
    children, as the operator writes them. Returns (monotonic start, monotonic end of the last call)."""
    collection = Kube.path(api.API_VERSION, api.KIND, namespace)

    def one(name: str) -> float:
        created = with_retry(lambda: kube.request("POST", collection, body=manifest(name, namespace, spec)),
                             f"creating {namespace}/{name}")
        if apply_children:
            answers = [with_retry(lambda: kube.apply(child), f"applying {child['kind']}/{name}")
                       for child in desired_for(name, namespace, created["metadata"]["uid"], spec)]
            if report:
                write_report(kube, created, answers)
        return time.monotonic()

    start = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        ends = list(pool.map(one, names))
    if controller is not None:
        ends.append(controller.wait(timeout))
    return start, max(ends)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    v = sorted(values)
    return v[max(0, min(len(v) - 1, int(round(q / 100 * len(v) + 0.5)) - 1))]


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used, its threads included; None once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


def latencies(rec: dict, names: list[str], end_key: str = "done") -> dict[str, float]:
    """Per object: seconds from first seen (ADDED) to `end_key`."""
    return {n: rec[end_key][n] - rec["created"][n] for n in names if n in rec[end_key] and n in rec["created"]}


def cluster_clock_lags(kube: Kube, namespace: str, kinds: list[tuple[str, str]]) -> list[float]:
    """From the cluster's own timestamps (whole seconds): last child's creationTimestamp
    minus the LLMDeployment's. A coarse cross-check of the watch-based figures."""
    import datetime as dt

    def ts(obj: dict) -> float:
        return dt.datetime.fromisoformat(obj["metadata"]["creationTimestamp"].replace("Z", "+00:00")).timestamp()

    owners = {o["metadata"]["name"]: ts(o) for o in kube.list(api.API_VERSION, api.KIND, namespace)}
    last_child: dict[str, float] = {}
    for av, kind in kinds:
        for c in kube.list(av, kind, namespace, f"app.kubernetes.io/managed-by={resources.MANAGED_BY}"):
            owner = (c["metadata"].get("labels") or {}).get(resources.INSTANCE_LABEL)
            if owner in owners:
                last_child[owner] = max(last_child.get(owner, 0.0), ts(c))
    return [last_child[n] - owners[n] for n in owners if n in last_child]


# ---- the phases ---------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="llmop-bench-"))
        self.out = Path(args.out)
        self.cluster: LocalCluster | None = None
        self.operator: Operator | None = None
        self.watchers: list[Watcher] = []
        self.figures: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                              "sizes": {"latency_n": args.n_latency, "throughput_n": args.n, "ready_n": args.n_ready,
                                        "populated_n": args.n_populated, "others_n": args.n_others,
                                        "replicas": args.replicas, "concurrency": CONCURRENCY}}
        self.curves: dict[str, list[tuple[int, float]]] = {}
        self.objects = 0

    # -- setup / teardown
    def setup(self) -> None:
        log(f"starting a local control plane in {self.work}")
        self.cluster = BenchCluster(self.work / "cluster", bin_dir=tools_dir())
        secs = self.cluster.up()
        log(f"control plane up in {secs:.1f}s")
        os.environ["KUBECONFIG"] = str(self.cluster.kubeconfig)
        from kubernetes import client, config

        config.load_kube_config(config_file=str(self.cluster.kubeconfig))
        self.kube = Kube(client.ApiClient())
        self.raw = Raw.of(self.cluster)
        k = self.cluster.kubectl
        k("apply", "--server-side", "-f", str(ROOT / "crds" / "llmdeployments.yaml"))
        k("wait", "--for=condition=Established", "--timeout=60s", "crd/llmdeployments.llm-operator.io")
        # hack/localcluster.py gives Services a /24 (254 addresses); a benchmark makes more.
        k("apply", "-f", "-", input=EXTRA_SERVICE_CIDR)
        k("wait", "--for=condition=Ready", "--timeout=60s", "servicecidr/bench-extra")
        k("apply", "-f", "-", input=extra_nodes_yaml(EXTRA_H100_NODES))
        extra = {f"gpu-h100-bench-{i}" for i in range(1, EXTRA_H100_NODES + 1)}
        deadline = time.monotonic() + 60
        while True:
            nodes = self.kube.list("v1", "Node", None)
            ready = {n["metadata"]["name"] for n in nodes if any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in (n.get("status") or {}).get("conditions") or [])}
            if extra <= ready and len(ready) == len(nodes):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"the nodes did not all turn Ready within 60s (ready: {sorted(ready)})")
            time.sleep(0.5)
        gpus = sum(int((n.get("status") or {}).get("allocatable", {}).get("nvidia.com/gpu", 0)) for n in nodes)
        if gpus < self.args.n_ready:
            raise BenchError(f"the cluster has {gpus} GPUs, fewer than --n-ready {self.args.n_ready} (one each)")
        self.cluster.kubectl_ok("taint", "nodes", "--all", "node.kubernetes.io/not-ready:NoSchedule-")
        for ns in BASELINE_NAMESPACES + OPERATOR_NAMESPACES + ["bench-setup"]:
            k("create", "namespace", ns)
        # Pods are refused until their namespace's default ServiceAccount exists (the controller manager makes it).
        deadline = time.monotonic() + 60
        while not self.cluster.kubectl_ok("get", "serviceaccount", "default", "-n", "bench-ready"):
            if time.monotonic() > deadline:
                raise BenchError("ServiceAccount bench-ready/default did not appear within 60s")
            time.sleep(0.5)
        log(f"CRD installed, a /16 ServiceCIDR added, {EXTRA_H100_NODES} extra H100 nodes ready")
        self.wait_gc_knows_crd()

    def wait_gc_knows_crd(self, timeout: float = 120) -> None:
        """Wait until the controller manager's garbage collector knows LLMDeployments. It
        finds new resources by discovery every 30 s; until then it fails and retries every
        child owned by an LLMDeployment, and once it knows them it reads each such owner
        (GET), all at once: a few requests per object of the first bursts, landing in
        whichever burst runs then. A probe: a ConfigMap owned by a deleted LLMDeployment,
        which the collector removes only once it knows the kind; a fresh one every 2 s
        (a failed one is retried later and later)."""
        ns, started = "bench-setup", time.monotonic()
        cms = f"/api/v1/namespaces/{ns}/configmaps"
        probes: list[str] = []
        while time.monotonic() - started < timeout:
            name = f"gc-probe-{len(probes)}"
            owner = self.kube.request("POST", Kube.path(api.API_VERSION, api.KIND, ns),
                                      body=manifest(name, ns, spec_of(1, 0)))
            ref = {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": name, "uid": owner["metadata"]["uid"]}
            self.kube.request("POST", cms, body={"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": name, "ownerReferences": [ref]}})
            self.kube.delete(api.API_VERSION, api.KIND, ns, name)
            probes.append(name)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                left = [c["metadata"]["name"] for c in self.kube.request("GET", cms)["items"]
                        if c["metadata"]["name"].startswith("gc-probe-")]
                if len(left) < len(probes):
                    for name in left:
                        try:
                            self.kube.request("DELETE", f"{cms}/{name}")
                        except KubeError as err:
                            if err.status != 404:   # the collector got there first
                                raise
                    log(f"  the garbage collector knows LLMDeployments ({time.monotonic() - started:.0f}s after asking)")
                    self.wait_api_quiet()   # its reads of the other probes' owners
                    return
                time.sleep(0.5)
        log(f"  note: the garbage collector did not collect a probe within {timeout:.0f}s; going on")

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

    def wait_controllers(self, timeout: float = 300) -> None:
        """Wait until the Deployment controller has caught up (a ReplicaSet for every
        Deployment), so that a burst does not start behind the previous one's work."""
        started = time.monotonic()
        while True:
            deployments = count_objects(self.raw, "/apis/apps/v1/deployments")
            replicasets = count_objects(self.raw, "/apis/apps/v1/replicasets")
            if replicasets >= deployments:
                break
            if time.monotonic() - started > timeout:
                raise BenchError(f"the Deployment controller did not catch up within {timeout:.0f}s "
                                 f"({replicasets} ReplicaSets for {deployments} Deployments)")
            time.sleep(2)
        waited = time.monotonic() - started
        if waited > 1:
            log(f"  waited {waited:.0f}s for the Deployment controller to catch up")

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
            self.operator.wait_quiet(self.operator.metrics().get("llm_operator_reconciles_total", 0),
                                     timeout or self.args.timeout)
        self.wait_api_quiet()

    def run_burst(self, namespace: str, n: int, spec: dict, mode: str, apply_children: bool, label: str,
                  prefix: str = "m-", queued: bool = False, report: bool = False) -> dict:
        names = [f"{prefix}{i:04d}" for i in range(n)]
        self.wait_controllers()
        w = self.watch(namespace, spec, names, mode)
        requests_before = apiserver_requests(self.raw)
        cpu_before = self.cpu_by_process()
        uptime_before = self.operator.uptime() if self.operator is not None else None
        controller = PlainController(self.raw, self.kube, namespace, names, spec, report) if queued else None
        start, client_end = burst(self.kube, namespace, names, spec, apply_children, controller, self.args.timeout,
                                  report=report and not queued)
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
            "n": n, "completed": len(done), "complete": complete,
            "wall_s": round(wall, 2) if wall is not None else None,
            "create_calls_s": round(client_end - start, 2),
            "p50_ms": ms(percentile(list(lat.values()), 50)), "p99_ms": ms(percentile(list(lat.values()), 99)),
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

    # -- 1. raw-apply baselines: the latency burst's size, then the throughput burst's
    def run_baseline(self, key: str, name: str, namespace: str, n: int, how: str, mode: str, **burst_args) -> dict:
        """One baseline burst, no operator running: `how` says what the plain client does."""
        log(f"{name}: {n} LLMDeployments {how}, {CONCURRENCY} threads, no operator")
        r = self.run_burst(namespace, n, spec_of(1, self.args.replicas), mode, label=f"{name}, {n} at once", **burst_args)
        self.figures[key] = r
        log(f"  {name}: {n} in {r['wall_s']}s wall; per object p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; "
            f"{r['api_requests_total']} requests ({r['api_requests_per_object']} per object): "
            f"{r['api_requests_per_object_by_kind']}")
        return r

    def baseline_latency(self) -> None:
        self.run_baseline("baseline_latency", "baseline", "bench-base-latency", self.args.n_latency,
                          "created and their children applied by a plain client", "children", apply_children=True)

    def baseline_queued(self) -> None:
        """The latency burst's size again, the children applied by a plain watch-driven client
        as the objects arrive: the same queue the operator meets (creations come faster than
        children can be applied), none of its other work."""
        self.run_baseline("baseline_queued", "queued baseline", "bench-base-queued", self.args.n_latency,
                          "created at once; a plain client watches them and applies their children as they come",
                          "children", apply_children=False, queued=True)

    def baseline_queued_same_writes(self) -> None:
        """The queued baseline again, its client also making the operator's status patch and
        Event for each object after its children: the queue and the writes the operator meets,
        none of its watching or deciding. Not a target of performance.md."""
        self.run_baseline("baseline_queued_same_writes", "queued same-writes baseline", "bench-base-queued-writes",
                          self.args.n_latency, "created at once; a plain client watches them and makes the "
                          "operator's writes (children, status, Event) as they come",
                          "reconciled", apply_children=False, queued=True, report=True)

    def baseline(self) -> None:
        self.run_baseline("baseline", "baseline", "bench-base", self.args.n,
                          "created and their children applied by a plain client", "children", apply_children=True)

    def baseline_same_writes(self) -> None:
        """The throughput burst's size, each object followed by exactly the operator's writes
        from a plain client (its children, then the status patch and the Event that the
        operator's own decide() gives): what the operator's extra writes cost the apiserver,
        apart from the operator's own work. Not a target of performance.md."""
        self.run_baseline("baseline_same_writes", "same-writes baseline", "bench-base-writes", self.args.n,
                          "each followed by the operator's writes (children, status, Event) from a plain client",
                          "reconciled", apply_children=True, report=True)

    # -- operator start
    def start_operator(self) -> None:
        self.operator = Operator(self.cluster, self.work, OPERATOR_NAMESPACES)
        code = self.figures["operator_code"] = {**self.operator.code(), "benchmark_imports": resources.__file__}
        log(f"operator code: {code['module']} (checkout {code['checkout']} at {code['commit']}"
            f"{', operator/ or runtime/ modified' if code['operator_code_modified'] else ''})")
        for what in ("module", "benchmark_imports"):
            if not code[what].startswith(str(ROOT)):
                raise BenchError(f"{what}: llm_operator from {code[what]}, not from this checkout ({ROOT})")
        secs = self.operator.start()
        log(f"operator up in {secs:.1f}s (pid {self.operator.pid}, HF_HUB_OFFLINE=1)")
        # One object first, so that the measured bursts find a warm operator (imports done,
        # the offline facts lookup failed once and remembered, as in a cluster that runs).
        spec = spec_of(1, self.args.replicas)
        w = self.watch("bench-latency", spec, ["warmup"], "reconciled")
        t0 = time.monotonic()
        burst(self.kube, "bench-latency", ["warmup"], spec, apply_children=False)
        if not w.wait_done(120):
            raise BenchError(f"the warm-up LLMDeployment was not reconciled within 120s:\n{self.operator.log_tail()}")
        rec = w.results()
        self.watchers.remove(w)
        self.objects += 1
        cold = rec["done"]["warmup"] - t0
        self.figures["warmup_first_object_ms"] = ms(cold)
        log(f"  warm-up object reconciled in {cold * 1000:.0f} ms (includes the offline facts lookup)")
        self.operator.wait_quiet(1, 60)

    # -- 2. latency burst
    def latency(self) -> None:
        n = self.args.n_latency
        spec = spec_of(1, self.args.replicas)
        log(f"latency: {n} LLMDeployments created at once -> children applied and observedGeneration current")
        before = self.operator.metrics()
        r = self.run_burst("bench-latency", n, spec, "reconciled", apply_children=False, label=f"operator, {n} at once")
        self.objects += n
        r.update(self.operator_work(before, n))
        lags = cluster_clock_lags(self.kube, "bench-latency", child_kinds(spec))
        r["cluster_clock_p50_s"] = percentile(lags, 50)
        r["cluster_clock_p99_s"] = percentile(lags, 99)
        base = self.figures.get("baseline_latency", {})
        r["p99_ratio_to_baseline"] = _ratio(r["p99_ms"], base.get("p99_ms"))
        r["children_p99_ratio_to_baseline"] = _ratio(r["children_p99_ms"], base.get("p99_ms"))
        queued = self.figures.get("baseline_queued", {})
        r["p99_ratio_to_queued_baseline"] = _ratio(r["p99_ms"], queued.get("p99_ms"))
        r["children_p99_ratio_to_queued_baseline"] = _ratio(r["children_p99_ms"], queued.get("p99_ms"))
        queued_writes = self.figures.get("baseline_queued_same_writes", {})
        r["p99_ratio_to_queued_same_writes_baseline"] = _ratio(r["p99_ms"], queued_writes.get("p99_ms"))
        self.figures["latency"] = r
        log(f"  p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms; burst wall {r['wall_s']}s; "
            f"cluster clock (1 s resolution) p50 {r['cluster_clock_p50_s']}s p99 {r['cluster_clock_p99_s']}s")
        log(f"  p99 vs the baseline's {base.get('p99_ms')} ms: {r['p99_ratio_to_baseline']}x "
            f"(children only: p99 {r['children_p99_ms']} ms, {r['children_p99_ratio_to_baseline']}x)")
        log(f"  p99 vs the queued baseline's {queued.get('p99_ms')} ms: {r['p99_ratio_to_queued_baseline']}x "
            f"(children only: {r['children_p99_ratio_to_queued_baseline']}x)")
        log(f"  p99 vs the queued same-writes baseline's {queued_writes.get('p99_ms')} ms: "
            f"{r['p99_ratio_to_queued_same_writes_baseline']}x")
        log(f"  operator: {r['reconciles_per_object']} reconciles and {r['operator_writes_per_object']} writes per object, "
            f"mean reconcile {r['mean_reconcile_ms']} ms")

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

    # -- 3. throughput burst vs baseline
    def throughput(self) -> None:
        n = self.args.n
        spec = spec_of(1, self.args.replicas)
        log(f"throughput: {n} LLMDeployments created at once -> all reconciled")
        before = self.operator.metrics()
        r = self.run_burst("bench-throughput", n, spec, "reconciled", apply_children=False,
                           label=f"operator, {n} at once")
        self.objects += n
        mem = self.operator.memory_mib()   # VmHWM: the peak so far, the burst's included
        r.update(self.operator_work(before, n))
        r["same_objects_as_baseline"] = self.same_objects("bench-throughput", "m-0000", spec)
        base = self.figures["baseline"]
        r["ratio_to_baseline"] = _ratio(r["wall_s"], base["wall_s"])
        r["api_requests_ratio_to_baseline"] = _ratio(r["api_requests_per_object"], base["api_requests_per_object"])
        same = self.figures.get("baseline_same_writes", {})
        r["ratio_to_same_writes_baseline"] = _ratio(r["wall_s"], same.get("wall_s"))
        r["memory_after_burst_mib"] = mem
        # Settled: the operator and the apiserver quiet (run_burst waited for both), then SETTLE_S more.
        time.sleep(SETTLE_S)
        settled = self.operator.memory_mib()
        self.figures["memory"] = {"objects": self.objects, "burst_VmHWM_mib": mem["VmHWM"],
                                  "after_burst_VmRSS_mib": mem["VmRSS"], "settled_VmRSS_mib": settled["VmRSS"],
                                  "settled_VmHWM_mib": settled["VmHWM"]}
        self.figures["throughput"] = r
        log(f"  operator: {n} in {r['wall_s']}s wall vs baseline {base['wall_s']}s: ratio {r['ratio_to_baseline']}x "
            f"(per object p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms); vs the same-writes baseline "
            f"{same.get('wall_s')}s: {r['ratio_to_same_writes_baseline']}x")
        log(f"  requests: {r['api_requests_total']} ({r['api_requests_per_object']} per object) vs the baseline's "
            f"{base['api_requests_total']} ({base['api_requests_per_object']}): ratio {r['api_requests_ratio_to_baseline']}x; "
            f"{r['api_requests_per_object_by_kind']}")
        log(f"  operator: {r['reconciles_per_object']} reconciles and {r['operator_writes_per_object']} writes per object, "
            f"mean reconcile {r['mean_reconcile_ms']} ms")
        log(f"  memory with {self.objects} LLMDeployments: VmHWM {mem['VmHWM']} MiB (the burst's peak), "
            f"VmRSS {mem['VmRSS']} MiB right after, {settled['VmRSS']} MiB settled")

    def same_objects(self, namespace: str, name: str, spec: dict) -> bool:
        """The operator's live children carry the desired-hash of what the baseline applies."""
        owner = self.kube.get(api.API_VERSION, api.KIND, namespace, name)
        for want in desired_for(name, namespace, owner["metadata"]["uid"], spec):
            live = self.kube.get(want["apiVersion"], want["kind"], namespace, want["metadata"]["name"]) or {}
            have = (live.get("metadata", {}).get("annotations") or {}).get(resources.HASH_ANNOTATION)
            if have != want["metadata"]["annotations"][resources.HASH_ANNOTATION]:
                log(f"  note: {want['kind']}/{name} differs from what the baseline applies")
                return False
        return True

    # -- 5. apply -> Ready
    def ready(self) -> None:
        n = self.args.n_ready
        spec = spec_of(1, 1)
        log(f"ready: {n} LLMDeployments (1 replica, 1 GPU each) created at once -> Ready (kwok pods ready at once)")
        r = self.run_burst("bench-ready", n, spec, "ready", apply_children=False, label=f"ready, {n} at once")
        self.objects += n
        self.figures["ready"] = r
        log(f"  apply -> Ready p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, all {r['completed']}/{n} in {r['wall_s']}s")

    # -- 4 and 3'. memory, and writes on a resync where nothing changed
    def resync(self) -> None:
        self.wait_controllers()
        mem = self.operator.memory_mib()
        log(f"memory with {self.objects} LLMDeployments, idle: {mem}")
        statuses = self.statuses()
        seen = EventLog(self.raw, f"/apis/{api.API_VERSION}/{api.PLURAL}", statuses)
        before = apiserver_writes(self.raw)
        log(f"resync: restarting the operator with {self.objects} LLMDeployments that need nothing")
        self.operator.stop()
        t0 = time.monotonic()
        self.operator.start()
        resumed = self.operator.wait_quiet(self.objects, self.args.timeout)
        total_s = time.monotonic() - t0
        after = apiserver_writes(self.raw)
        changed = status_changes(statuses, self.statuses())
        changed["watch_events"] = seen.stop()
        ours = writes_between(before, after, operator_side)
        others = writes_between(before, after, lambda key: not operator_side(key))
        m = self.operator.metrics()
        mem_after = self.operator.memory_mib()
        self.figures["resync"] = {
            "objects": self.objects,
            "writes_total": sum(ours.values()),
            "writes_per_llmdeployment": round(sum(ours.values()) / self.objects, 3),
            "writes_by_resource": ours,
            "other_writes_in_window": others,
            "reconciles_after_restart": m.get("llm_operator_reconciles_total", 0),
            "operator_writes_metric": m.get("llm_operator_writes_total", 0),
            "resume_s": round(resumed, 2),
            "restart_to_quiet_s": round(total_s, 2),
            # What the writes changed, for a few objects: where a no-op resync is not one.
            "status_changes": changed,
        }
        self.figures.setdefault("memory", {}).update({"resync_objects": self.objects, "before_restart_mib": mem,
                                       "after_restart_and_resync_mib": mem_after})
        r = self.figures["resync"]
        log(f"  {r['writes_total']:.0f} operator-side writes for {self.objects} objects "
            f"({r['writes_per_llmdeployment']} per LLMDeployment): {ours or 'none'}")
        log(f"  {r['reconciles_after_restart']:.0f} reconciles in {resumed:.1f}s after the restart; "
            f"memory after the resync {mem_after}")

    # -- 6. requests per object in a namespace that already holds many other objects
    def populated(self) -> None:
        n, others = self.args.n_populated, self.args.n_others
        spec = spec_of(1, self.args.replicas)
        log(f"populated namespace: {n} LLMDeployments at once in an empty namespace (reference), then {n} in a "
            f"namespace holding {others} other objects")
        ref = self.run_burst("bench-reference", n, spec, "reconciled", apply_children=False,
                             label=f"operator, {n} at once, empty namespace")
        self.objects += n
        log(f"  reference: {ref['api_requests_total']} requests ({ref['api_requests_per_object']} per object), "
            f"p50 {ref['p50_ms']} ms, p99 {ref['p99_ms']} ms, wall {ref['wall_s']}s")
        made = self.populate("bench-populated", others, spec)
        r = self.run_burst("bench-populated", n, spec, "reconciled", apply_children=False,
                           label=f"operator, {n} at once, {others} others in the namespace")
        self.objects += n
        self.figures["populated"] = {
            "others": made, "reference": ref, "burst": r,
            "api_requests_ratio_to_reference": _ratio(r["api_requests_per_object"], ref["api_requests_per_object"]),
            "p99_ratio_to_reference": _ratio(r["p99_ms"], ref["p99_ms"]),
        }
        f = self.figures["populated"]
        log(f"  with {others} others: {r['api_requests_total']} requests ({r['api_requests_per_object']} per object) "
            f"vs {ref['api_requests_per_object']} in the empty namespace: ratio {f['api_requests_ratio_to_reference']}x; "
            f"p99 {r['p99_ms']} ms ({f['p99_ratio_to_reference']}x); {r['api_requests_per_object_by_kind']}")

    def populate(self, namespace: str, count: int, spec: dict) -> dict:
        """`count` objects in `namespace` before the burst: half LLMDeployments, reconciled by
        the operator (so its Services, Deployments and ReplicaSets are there too: the read
        model is populated), and half objects it must filter out: ConfigMaps, and Services
        and Deployments (0 replicas) labelled as managed by another tool."""
        started = time.monotonic()
        n_llmd = count // 2
        n_svc = n_dep = count // 20
        n_cm = count - n_llmd - n_svc - n_dep

        def labels(i: int) -> dict:
            return {"app.kubernetes.io/name": "other", "app.kubernetes.io/instance": f"other-{i:04d}",
                    "app.kubernetes.io/managed-by": "another-tool"}

        core, apps = f"/api/v1/namespaces/{namespace}", f"/apis/apps/v1/namespaces/{namespace}"
        bodies = [(f"{core}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                          "metadata": {"name": f"other-{i:04d}", "labels": labels(i)},
                                          "data": {"config.yaml": "key: value\n" * 20}}) for i in range(n_cm)]
        bodies += [(f"{core}/services", {"apiVersion": "v1", "kind": "Service",
                                         "metadata": {"name": f"other-{i:04d}", "labels": labels(i)},
                                         "spec": {"selector": {"app": f"other-{i:04d}"},
                                                  "ports": [{"port": 80, "targetPort": 8080}]}}) for i in range(n_svc)]
        bodies += [(f"{apps}/deployments", {"apiVersion": "apps/v1", "kind": "Deployment",
                                            "metadata": {"name": f"other-{i:04d}", "labels": labels(i)},
                                            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": f"other-{i:04d}"}},
                                                     "template": {"metadata": {"labels": {"app": f"other-{i:04d}", **labels(i)}},
                                                                  "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}})
                   for i in range(n_dep)]

        def create(item: tuple[str, dict]) -> None:
            path, body = item
            with_retry(lambda: self.kube.request("POST", path, body=body), f"creating {path}/{body['metadata']['name']}")

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(create, bodies))
        names = [f"pre-{i:04d}" for i in range(n_llmd)]
        w = self.watch(namespace, spec, names, "reconciled")
        burst(self.kube, namespace, names, spec, apply_children=False)
        complete = w.wait_done(self.args.timeout)
        rec = w.results()
        self.watchers.remove(w)
        if not complete:
            raise BenchError(f"populating {namespace}: only {len(rec['done'])}/{n_llmd} LLMDeployments reconciled "
                             f"within {self.args.timeout:.0f}s")
        self.objects += n_llmd
        self.wait_controllers()
        self.settle()
        made = {"configmaps": n_cm, "services_unmanaged": n_svc, "deployments_unmanaged": n_dep,
                "llmdeployments_reconciled": n_llmd, "setup_s": round(time.monotonic() - started, 1)}
        log(f"  populated {namespace} in {made['setup_s']}s: {made}")
        return made

    def statuses(self) -> dict[str, dict]:
        out = {}
        for ns in self.operator.namespaces:
            for o in self.kube.list(api.API_VERSION, api.KIND, ns):
                out[f"{ns}/{o['metadata']['name']}"] = o.get("status") or {}
        return out

    # -- optional: where the operator's time goes
    def profile(self) -> None:
        py_spy = shutil.which("py-spy") or (self.args.py_spy if self.args.py_spy and Path(self.args.py_spy).exists() else None)
        if not py_spy:
            log("profile: py-spy not found (pip install py-spy, or --py-spy PATH): skipped")
            return
        n = self.args.n_latency
        spec = spec_of(1, self.args.replicas)
        dest = self.out / "operator-profile.txt"
        log(f"profile: py-spy on the operator during a burst of {n} (not part of the figures above)")
        prof = subprocess.Popen([py_spy, "record", "--pid", str(self.operator.pid), "--format", "raw",
                                 "--rate", "200", "--gil", "--output", str(dest), "--nonblocking"],
                                stdout=subprocess.DEVNULL, stderr=open(self.work / "py-spy.log", "ab"))
        try:
            time.sleep(1.0)
            self.run_burst("bench-profile", n, spec, "reconciled", apply_children=False, label="_profile")
            self.objects += n
        finally:
            prof.send_signal(signal.SIGINT)
            try:
                prof.wait(30)
            except subprocess.TimeoutExpired:
                prof.kill()
        self.curves.pop("_profile", None)
        if dest.exists():
            self.figures["profile"] = summarize_profile(dest)
            log(f"  collapsed stacks in {dest}; top self time: {self.figures['profile']['top_self'][:6]}")
        else:
            log(f"  py-spy wrote nothing: {(self.work / 'py-spy.log').read_text(errors='replace')[-500:]}")

    # -- output
    def report(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        f = self.figures
        thr, lat, mem = f.get("throughput", {}), f.get("latency", {}), f.get("memory", {})
        pop, base = f.get("populated", {}), f.get("baseline", {})
        # (key, what, the figure, the limit): each figure <= its limit.
        rows = [
            ("throughput_ratio<=1.2", f"{self.args.n} at once -> all reconciled, wall time / baseline's",
             thr.get("ratio_to_baseline"), 1.2),
            ("throughput_ratio_same_writes<=1.2", "the same wall time / the same-writes baseline's "
             f"({f.get('baseline_same_writes', {}).get('wall_s')} s; not a target of performance.md: see README)",
             thr.get("ratio_to_same_writes_baseline"), 1.2),
            ("api_requests_ratio<=1.5", f"API requests per object in that burst / baseline's "
             f"({thr.get('api_requests_per_object')} vs {base.get('api_requests_per_object')})",
             thr.get("api_requests_ratio_to_baseline"), 1.5),
            ("latency_p99_ratio<=2", f"p99 latency, {self.args.n_latency} at once / baseline's "
             f"({lat.get('p99_ms')} ms vs {f.get('baseline_latency', {}).get('p99_ms')} ms)",
             lat.get("p99_ratio_to_baseline"), 2),
            ("latency_p99_ratio_queued<=2", f"the same p99 / the queued baseline's "
             f"({f.get('baseline_queued', {}).get('p99_ms')} ms; not a target of performance.md: see README)",
             lat.get("p99_ratio_to_queued_baseline"), 2),
            ("latency_p99_ratio_queued_same_writes<=2", "the same p99 / the queued same-writes baseline's "
             f"({f.get('baseline_queued_same_writes', {}).get('p99_ms')} ms; not a target of performance.md: see README)",
             lat.get("p99_ratio_to_queued_same_writes_baseline"), 2),
            ("memory_burst_hwm_mib<=200", f"operator VmHWM, MiB, in the {self.args.n} burst "
             f"({mem.get('objects')} objects held)", mem.get("burst_VmHWM_mib"), 200),
            ("memory_settled_rss_mib<=150", "operator VmRSS, MiB, settled after that burst",
             mem.get("settled_VmRSS_mib"), 150),
            ("resync_writes_per_object==0", "writes per LLMDeployment on a resync where nothing changed",
             f.get("resync", {}).get("writes_per_llmdeployment"), 0),
            ("populated_requests_ratio<=1.1", f"requests per object with {self.args.n_others} others in the "
             f"namespace / in an empty one ({pop.get('burst', {}).get('api_requests_per_object')} vs "
             f"{pop.get('reference', {}).get('api_requests_per_object')})",
             pop.get("api_requests_ratio_to_reference"), 1.1),
            ("ready_p50_ms<=2000", f"apply -> Ready, {self.args.n_ready} at once, p50 ms",
             f.get("ready", {}).get("p50_ms"), 2000),
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


def plot_curves(curves: dict[str, list], out: Path) -> None:
    """OUT/latency.png: each object's latency against how many models the burst had made."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("plot: matplotlib is not importable: no latency.png (install it, then run with --replot)")
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, points in curves.items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, [y * 1000 for y in ys], ".", markersize=3, label=label)
    ax.set_xlabel("models created so far in the burst")
    ax.set_ylabel("latency per object, ms (created -> reconciled, or -> Ready)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(f"llm-operator reconcile latency ({os.cpu_count()} CPUs, local control plane)")
    path = out / "latency.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    log(f"plot: {path}")


def status_changes(before: dict[str, dict], after: dict[str, dict], limit: int = 5) -> dict:
    """Objects whose status differs, with each differing field before -> after (a few)."""
    changed = {}
    for key in sorted(before):
        a, b = before[key], after.get(key, {})
        fields = {k: f"{json.dumps(a.get(k))[:300]} -> {json.dumps(b.get(k))[:300]}"
                  for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
        if fields:
            changed[key] = fields
    return {"objects": len(changed), "examples": dict(list(changed.items())[:limit])}


def _le(value, limit) -> bool | None:
    return None if value is None else value <= limit


def _ratio(a, b) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def summarize_profile(path: Path, top: int = 15) -> dict:
    """From py-spy's collapsed stacks: the functions with the most samples on top of the
    stack (self), and the operator's own functions with the most samples anywhere (total)."""
    self_counts: dict[str, int] = {}
    total_counts: dict[str, int] = {}
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        frames = stack.split(";")
        leaf = re.sub(r" \(.*?:\d+\)$", "", frames[-1].strip())
        leaf_file = re.search(r"\((.*?):\d+\)", frames[-1])
        key = f"{leaf} ({Path(leaf_file.group(1)).name})" if leaf_file else leaf
        self_counts[key] = self_counts.get(key, 0) + n
        seen = set()
        for fr in frames:
            m = re.match(r"\s*(.*?) \((.*?):\d+\)", fr)
            if m and ("llm_operator" in m.group(2) or "kopf" in m.group(2) or "kubernetes" in m.group(2)):
                k = f"{m.group(1)} ({'/'.join(Path(m.group(2)).parts[-2:])})"
                if k not in seen:
                    seen.add(k)
                    total_counts[k] = total_counts.get(k, 0) + n

    def share(d: dict) -> list[str]:
        return [f"{k}: {100 * v / samples:.1f}%" for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": samples, "top_self": share(self_counts), "top_total_operator_kopf_client": share(total_counts)}


def extra_nodes_yaml(count: int) -> str:
    """H100 nodes like hack/kwok/nodes.yaml's, managed by kwok (the annotation)."""
    docs = []
    for i in range(1, count + 1):
        name = f"gpu-h100-bench-{i}"
        docs.append(f"""apiVersion: v1
kind: Node
metadata:
  name: {name}
  annotations: {{kwok.x-k8s.io/node: fake}}
  labels:
    kubernetes.io/hostname: {name}
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    nvidia.com/gpu.present: "true"
    nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3
    nvidia.com/gpu.memory: "81559"
    nvidia.com/gpu.count: "8"
spec:
  taints:
  - {{key: nvidia.com/gpu, value: present, effect: NoSchedule}}
status:
  capacity: {{cpu: "192", memory: 2Ti, pods: "110", nvidia.com/gpu: "8"}}
  allocatable: {{cpu: "190", memory: 1900Gi, pods: "110", nvidia.com/gpu: "8"}}
""")
    return "---\n".join(docs)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small sizes (latency 50, throughput 200, ready 20, 400 others), for a smoke run")
    p.add_argument("--n", type=int, default=None, help="LLMDeployments in the throughput burst and the baseline (default 1000)")
    p.add_argument("--n-latency", type=int, default=None, help="LLMDeployments in the latency burst (default 200)")
    p.add_argument("--n-ready", type=int, default=None, help="LLMDeployments in the apply -> Ready burst (default 50)")
    p.add_argument("--n-others", type=int, default=None,
                   help="objects in the populated namespace before its burst (default 2000: half LLMDeployments, "
                        "half ConfigMaps, Services and Deployments the operator does not manage)")
    p.add_argument("--n-populated", type=int, default=None,
                   help="LLMDeployments in the populated namespace's burst and its empty-namespace reference "
                        "(default: --n-latency)")
    p.add_argument("--replicas", type=int, default=0,
                   help="replicas of the latency/throughput objects (default 0: the Deployment is made, no pods, "
                        "so the scheduler and kwok do not compete for the 2 CPUs; the Ready burst always uses 1)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out"), help="where results.json (and latency.png) go")
    p.add_argument("--timeout", type=float, default=600, help="seconds any one wait may take (default 600)")
    p.add_argument("--profile", action="store_true", help="run py-spy on the operator during one extra burst")
    p.add_argument("--py-spy", default="", help="path to py-spy when it is not on PATH")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (cluster logs, operator log)")
    p.add_argument("--replot", action="store_true", help="only draw OUT/latency.png again from OUT/curves.json")
    args = p.parse_args(argv)
    quick = args.quick
    args.n = args.n or (200 if quick else 1000)
    args.n_latency = args.n_latency or (50 if quick else 200)
    args.n_ready = args.n_ready or (20 if quick else 50)
    args.n_others = args.n_others if args.n_others is not None else (400 if quick else 2000)
    args.n_populated = args.n_populated or args.n_latency
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        plot_curves(json.loads((Path(args.out) / "curves.json").read_text()), Path(args.out))
        return 0
    bench = Bench(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    code = 0
    try:
        bench.setup()
        bench.baseline_latency()
        bench.baseline_queued()
        bench.baseline_queued_same_writes()
        bench.baseline()
        bench.baseline_same_writes()
        bench.start_operator()
        bench.latency()
        bench.throughput()
        bench.ready()
        bench.resync()
        # After the restart: the operator's periodic resync (every 5 minutes from its start)
        # is then the furthest away.
        bench.populated()
        if args.profile:
            bench.profile()
    except KeyboardInterrupt:
        print("\nbench: interrupted; cleaning up", file=sys.stderr)
        code = 130
    except (BenchError, KubeError) as err:
        print(f"bench: {err}", file=sys.stderr)
        code = 1
    except Exception:  # noqa: BLE001 - print it, then still clean up and report what was measured
        traceback.print_exc()
        code = 1
    finally:
        bench.figures["bench_wall_s"] = round(time.monotonic() - started, 1)
        try:
            bench.teardown()
        finally:
            if code != 130:
                bench.report()
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The watcher: a process of its own, so arrival times do not wait on our GIL; and the
event log of a resync."""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import socket
import sys
import threading
import time
from urllib.parse import urlencode

from llm_operator import api
from llm_operator.decide.manifests import INSTANCE_LABEL, MANAGED_BY
from llm_operator.kube.client import Kube

from .apiserver import Raw
from .config import BenchError


def _watch_process(
    raw_args,
    namespace: str,
    child_paths: dict[str, str],
    names: list[str],
    mode: str,
    ready_evt,
    done_evt,
    stop_evt,
    conn,
) -> None:
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
        ok = {
            "children": have_children,
            "reconciled": have_children and name in rec["current"],
            "ready": name in rec["ready"],
        }[mode]
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
            owner = (obj["metadata"].get("labels") or {}).get(INSTANCE_LABEL)
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
            except (OSError, http.client.HTTPException) as err:  # a timeout or a dropped stream: go on from rv
                if not stop_evt.is_set():
                    print(f"watch {path}: {err!r}; reconnecting", file=sys.stderr)
                    time.sleep(0.2)

    owner_path = Kube.path(api.API_VERSION, api.KIND, namespace)
    selector = urlencode({"labelSelector": f"app.kubernetes.io/managed-by={MANAGED_BY}"})
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
                self.events.append(
                    {
                        "object": key,
                        "type": ev["type"],
                        "status_fields_changed": sorted(k for k in set(st) | set(old) if st.get(k) != old.get(k)),
                    }
                )
                self.last[key] = st
        except (OSError, ValueError, http.client.HTTPException):
            return  # shut down by stop()
        finally:
            if self.conn is not None:
                self.conn.close()

    def stop(self) -> dict:
        time.sleep(1)  # the last events are on their way
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
        self.proc = ctx.Process(
            target=_watch_process,
            daemon=True,
            args=(raw.args(), namespace, paths, list(names), mode, self.ready, self.done, self.stop_evt, child),
        )
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

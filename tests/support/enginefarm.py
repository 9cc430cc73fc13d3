"""Fake engines on the loopback IPs of real (kwok) pods: the part a kubelet and a GPU would play.

An LLMDeployment whose pods carry GATE_ANNOTATION: closed (set through spec.podAnnotations)
gets pods that kwok runs with an IP but not Ready (hack/kwok/stages.yaml). The farm sees each
such pod, starts a FakeEngine on its IP and the container port named http, checks /health
answers, and opens the gate once: kwok then marks the pod Ready, as a kubelet would once the
readiness probe passes. A gate a test closes again stays closed (the pod turns unready and
stays so): the farm opens each pod's gate only the first time. So a pod is Ready only while something listens on its address, and
the gateway, the operator and the tests reach it at the address in the pod's status.

Every address passes through loopback.require_loopback: nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import threading
import time
import urllib.request

from kubernetes import client, config

from support.fakeengine import FakeEngine
from support.loopback import pod_url, require_loopback

GATE_ANNOTATION = "pod-ready.stage.kwok.x-k8s.io/gate"
GATED = {GATE_ANNOTATION: "closed"}
NAME_LABEL = "llm-operator.io/name"


class EngineFarm:
    def __init__(self, kubeconfig: str, namespace: str, options: dict[str, dict] | None = None, interval: float = 0.1):
        """options: LLMDeployment name -> FakeEngine keyword arguments for its pods."""
        self.namespace = namespace
        self.options = options or {}
        self.interval = interval
        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(api_client)
        self.engines: dict[str, FakeEngine] = {}  # pod uid -> engine
        self.pods: dict[str, dict] = {}  # pod uid -> pod (as last seen)
        self.opened: set[str] = set()  # pod uids whose gate the farm opened
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="engine-farm", daemon=True)

    def __enter__(self) -> EngineFarm:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            for engine in self.engines.values():
                engine.stop()
            self.engines.clear()

    def engines_of(self, model: str) -> list[FakeEngine]:
        with self._lock:
            return [
                e
                for uid, e in self.engines.items()
                if (self.pods[uid]["metadata"].get("labels") or {}).get(NAME_LABEL) == model
            ]

    def kill(self, engine: FakeEngine) -> None:
        """The engine dies: its listener closes and open connections are cut (its pod stays Ready
        until something notices, as after a crash)."""
        engine.stop()

    # ---- the loop ----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as err:  # noqa: BLE001: kept for the test to see, the loop goes on
                self.errors.append(repr(err))
            self._stop.wait(self.interval)

    def _tick(self) -> None:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=NAME_LABEL).to_dict()["items"]
        seen = set()
        for pod in pods:
            meta, status = pod["metadata"], pod["status"] or {}
            uid = meta["uid"]
            seen.add(uid)
            ip = status.get("pod_ip")
            if meta.get("deletion_timestamp") or not ip:
                continue
            with self._lock:
                known = uid in self.engines
            if not known:
                require_loopback(ip)
                port = _http_port(pod)
                if port is None:
                    continue
                model = (meta.get("labels") or {}).get(NAME_LABEL, "")
                engine = FakeEngine(ip, port, **self.options.get(model, {})).start_in_thread()
                with self._lock:
                    self.engines[uid] = engine
                    self.pods[uid] = pod
                url = pod_url({"status": {"podIP": ip}, "metadata": {"name": meta["name"]}}, port, "health")
                with urllib.request.urlopen(url, timeout=5) as resp:
                    assert resp.status == 200
            if uid not in self.opened and (meta.get("annotations") or {}).get(GATE_ANNOTATION) == "closed":
                self.core.patch_namespaced_pod(
                    meta["name"], self.namespace, {"metadata": {"annotations": {GATE_ANNOTATION: "open"}}}
                )
                self.opened.add(uid)
        with self._lock:
            for uid in [u for u in self.engines if u not in seen]:
                self.engines.pop(uid).stop()  # the pod is gone: free its address
                self.opened.discard(uid)


def _http_port(pod: dict) -> int | None:
    for c in pod["spec"]["containers"]:
        for p in c.get("ports") or []:
            if p.get("name") == "http":
                return int(p["container_port"])
    return None


def wait_ready_engines(farm: EngineFarm, model: str, count: int, timeout: float = 60) -> list[FakeEngine]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engines = farm.engines_of(model)
        if len(engines) >= count:
            return engines
        time.sleep(0.1)
    raise AssertionError(
        f"{model}: {len(farm.engines_of(model))} fake engines of {count} after {timeout} s; "
        f"farm errors: {farm.errors[-3:]}"
    )


__all__ = ["EngineFarm", "GATED", "GATE_ANNOTATION", "require_loopback", "wait_ready_engines"]

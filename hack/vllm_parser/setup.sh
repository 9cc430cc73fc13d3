#!/usr/bin/env bash
# Build what check_argv.py and check_table.py need to run vLLM's own `vllm serve` parser:
# a venv under ~/.cache/llm-operator/vllm-parser-<version> with the vllm wheel's Python files
# (no compiled code) and the light packages its parser imports, all from PyPI. No torch, no GPU.
#
#   hack/vllm_parser/setup.sh            # PYTHON=python3.12 to pick the interpreter (3.11 to 3.14)
#   VLLM_VERSION=0.34.0 hack/vllm_parser/setup.sh   # a version the table does not cover yet
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
VERSION=${VLLM_VERSION:-0.33.0}
TABLE="$HERE/../../common/llm_common/data/vllm-serve-$VERSION.json"
DEST=${VLLM_PARSER_HOME:-$HOME/.cache/llm-operator/vllm-parser-$VERSION}
PYTHON=${PYTHON:-python3}

"$PYTHON" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 15))' \
  || { echo "vLLM $VERSION needs Python 3.11 to 3.14; set PYTHON" >&2; exit 1; }
# The wheel the table was made from (its "source" block); for a new version, what PyPI serves.
WHEEL="" SHA256=""
if [ -f "$TABLE" ]; then
  read -r WHEEL SHA256 < <("$PYTHON" -c 'import json, sys; w = json.load(open(sys.argv[1]))["source"]["wheel"]; print(w["file"], w["sha256"])' "$TABLE")
fi

rm -rf "$DEST"
mkdir -p "$DEST/dl"
"$PYTHON" -m venv "$DEST/venv"
PIP=("$DEST/venv/bin/python" -m pip -q --disable-pip-version-check)

# 1. The wheel, for Linux x86_64 whatever this machine is (about 340 MB, kept only while unpacking).
"${PIP[@]}" download --no-cache-dir --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
  --python-version 3.11 --implementation cp "vllm==$VERSION" -d "$DEST/dl"
if [ -n "$SHA256" ]; then
  echo "$SHA256  $DEST/dl/$WHEEL" | sha256sum -c --quiet - \
    || { echo "$WHEEL does not have the sha256 the table records" >&2; exit 1; }
else
  WHEEL=$(basename "$DEST"/dl/vllm-"$VERSION"-*.whl)
  SHA256=$(sha256sum "$DEST/dl/$WHEEL" | cut -d' ' -f1)
  echo "no table for $VERSION yet: $WHEEL, sha256 $SHA256"
fi

# 2. Its Python side only: no shared objects, no vllm-rs binary, no C/CUDA sources.
"$DEST/venv/bin/python" - "$DEST/dl/$WHEEL" "$DEST/vllm-py" <<'EOF'
import sys, zipfile
skip = (".so", ".h", ".hpp", ".cuh", ".inl", ".cu", ".cpp", ".js")
with zipfile.ZipFile(sys.argv[1]) as whl:
    whl.extractall(sys.argv[2], [n for n in whl.namelist() if not n.endswith(skip) and n != "vllm/vllm-rs"])
EOF
rm -rf "$DEST/dl"

# 3. What the parser's imports need, at the versions vllm's own metadata asks for.
NEEDED="regex pydantic huggingface_hub pyyaml typing_extensions msgspec cachetools psutil numpy cbor2
pyzmq urllib3 safetensors aiohttp requests openai-harmony openai cloudpickle pillow pybase64 uvloop
py-cpuinfo fastapi prometheus_client partial-json-parser llguidance uvicorn watchfiles orjson tokenizers"
REQS=$(NEEDED="$NEEDED" "$DEST/venv/bin/python" - "$DEST/vllm-py/vllm-$VERSION.dist-info/METADATA" <<'EOF'
import os, re, sys
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
want = {norm(n) for n in os.environ["NEEDED"].split()}
spec = {}
for line in open(sys.argv[1]):
    if line.startswith("Requires-Dist:") and "extra ==" not in line:
        m = re.match(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)", line.split(":", 1)[1].split(";")[0].strip())
        if norm(m.group(1)) in want:
            spec[norm(m.group(1))] = m.group(1) + m.group(3).replace(" ", "")
print(" ".join(spec.get(n, n) for n in sorted(want)))
EOF
)
# shellcheck disable=SC2086
"${PIP[@]}" install --no-cache-dir $REQS

# check_argv.py and check_table.py run only once this is here: a build cut short is not used.
echo "vllm $VERSION $WHEEL $SHA256" > "$DEST/ready"
echo "$DEST: $(du -sh "$DEST" | cut -f1)"

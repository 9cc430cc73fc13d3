#!/usr/bin/env bash
# Print the directory of vLLM's own parser for the pinned version (the one llm_common/vllm.py
# names), setting it up first when it is not there (setup.sh: about 40 s, 331 MB, PyPI only).
# Cached beside the other tools, under $LLMOP_CACHE_DIR or ~/.cache/llm-operator.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(sed -n 's/^VERSION = "\(.*\)"$/\1/p' "$here/../../common/llm_common/vllm.py")"
cache_root="${LLMOP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-operator}"
dir="$cache_root/vllm-parser-$version"
if [[ ! -f "$dir/ready" ]]; then
  echo "vllm-parser: setting up vLLM $version's own parser in $dir (about 40 s, from PyPI)" >&2
  VLLM_VERSION="$version" VLLM_PARSER_HOME="$dir" bash "$here/setup.sh" >&2 \
    || { echo "vllm-parser: setting up vLLM's parser failed (see above); PyPI must be reachable." >&2; exit 1; }
fi
echo "$dir"

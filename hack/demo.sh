#!/usr/bin/env bash
# The local demo: control plane, CRD, operator, the examples, then `kubectl get llmd`.
#   hack/demo.sh            bring it all up (reuses a running plane)
#   hack/demo.sh stop       stop the operator the demo started
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cluster
pidfile=$dir/operator.pid

stop_operator() {
  if [[ -f $pidfile ]]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  fi
}

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
nohup .venv/bin/llm-operator run --all-namespaces --liveness=http://127.0.0.1:18080/healthz \
  --metrics-port=18081 >>"$dir/logs/operator.log" 2>&1 &
echo $! >"$pidfile"
for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.2; done
curl -sf http://127.0.0.1:18080/healthz >/dev/null || { tail -20 "$dir/logs/operator.log"; echo "demo: the operator did not start" >&2; exit 1; }

echo "== applying examples/"
# The Mixtral example reads a Hub token by reference; a placeholder stands in for yours.
kubectl create secret generic hf-token --from-literal=token=hf_placeholder --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f examples/
echo "== waiting until every model is Ready (the plan first reads each model's facts from the Hub)"
kubectl wait --for=condition=Ready llmd --all --timeout=300s
kubectl get llmd -o wide
echo
echo "Try: source $dir/env; kubectl describe llmd mistral-7b; kubectl get deploy,svc,pods -o wide"
echo "Stop: make cluster-down"

"""What the tests share, imported as `from support.<module> import ...` (tests/ and hack/ are on
sys.path: pyproject.toml's pythonpath). Fixtures and hooks stay in tests/conftest.py.

The local control plane, as the tests drive it:
  cluster.py          Kubectl, wait_for, condition, settled, a StorageClass and volumes bound
                      ahead, the CRD, apiserver write counts; reading what the operator made
                      (children, events, pods_of, wait_reason, engine_args, ...)
  manifests.py        LLMDeployment manifests (llmd, cached), examples/, the invalid cases
  paths.py            ROOT, DATA (tests/data), CHART
  serviceaccount.py   a kubeconfig with exactly the Helm chart's RBAC, for the operator and gateway

Processes beside the plane:
  processlog.py       a child process's log, with the stretches a test excused
  operatorprocess.py  `llm-operator run`
  gatewayprocess.py   `llm-operator gateway`

Stand-ins for what a test cluster lacks:
  hub.py              the Hugging Face Hub (files, model info, gated and missing repositories,
                      injected faults), and the repositories the session's Hubs serve
  podmetrics.py       the pods' /metrics, for the operator's autoscaler
  fakeengine.py       an engine speaking TGI's HTTP API (standalone: also the real node's stand-in
                      image and `python tests/support/fakeengine.py`); its parts are in engine_sim/
  enginefarm.py       fake engines on kwok pods' loopback IPs, opening their readiness gates
  realengine.py       vLLM's CPU build running each pod's own argv, and download Jobs' containers
  loopback.py         the one gate for addresses tests send traffic to
"""

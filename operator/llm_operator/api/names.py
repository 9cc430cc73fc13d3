"""The API's names (a contract: DESIGN.md keeps them stable), with no import: the clients
in kube/ use them without loading the spec's models.

The gateway's metric names are here too: the operator's HPA and autoscaler read what the
gateway exports, and a user's Prometheus queries name them."""

GROUP = "llm-operator.io"
VERSION = "v1alpha1"
KIND = "LLMDeployment"
PLURAL = "llmdeployments"
SINGULAR = "llmdeployment"
SHORT_NAMES = ["llmd", "llm"]
API_VERSION = f"{GROUP}/{VERSION}"
# The field manager of every server-side apply the operator makes.
FIELD_MANAGER = "llm-operator"
# Set by the gateway when a request wakes a model from zero replicas (an RFC 3339 UTC time);
# the operator reports it in status.lastWokenByRequest and in the conditions while the model starts.
WOKEN_ANNOTATION = f"{GROUP}/woken-by-request-at"

# The gateway's own series (gateway/metrics.py exports them), each with a label model="namespace/name".
GATEWAY_IN_FLIGHT = "llm_gateway_requests_in_flight"  # taken, not yet answered; held ones included
GATEWAY_HELD = "llm_gateway_requests_held"  # waiting for a ready endpoint
GATEWAY_REQUESTS = "llm_gateway_requests_total"  # answered, by code: moves with every request

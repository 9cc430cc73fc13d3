"""The LLMDeployment API: the pydantic spec (spec.py, engine.py) and status (status.py), the
one source of truth, parsed once per generation; the CRD generated from them (crd.py); its
names (names.py) and the shape of a condition's verdict (conditions.py)."""

from llm_operator.api.base import *  # noqa: F403
from llm_operator.api.engine import *  # noqa: F403
from llm_operator.api.names import *  # noqa: F403
from llm_operator.api.serving import *  # noqa: F403
from llm_operator.api.spec import *  # noqa: F403
from llm_operator.api.status import *  # noqa: F403

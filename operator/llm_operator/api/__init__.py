"""The LLMDeployment API: the pydantic spec and status (the one source of truth, parsed once
per event), the CRD generated from it, and the shape of a condition's verdict."""

from llm_operator.api.spec import *  # noqa: F403  (the package's face is the spec module)

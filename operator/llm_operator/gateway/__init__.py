"""The OpenAI-compatible front door: one endpoint for every LLMDeployment (`llm-operator gateway`)."""

"""llm-runtime: what runs inside the serving pods around Text Generation Inference."""

__version__ = "0.1.0"

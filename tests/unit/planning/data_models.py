"""The models of tests/data/models (config.json and exact parameter count) as ModelFacts, for
the planning tests."""

import json
from pathlib import Path

from llm_operator.facts.hub import facts_from_local

MODELS = Path(__file__).parents[2] / "data" / "models"
PARAMS = json.loads((MODELS / "params.json").read_text())


MODEL_IDS = {
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama-2-70b": "meta-llama/Llama-2-70b-hf",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B",
    "llama-3-70b": "meta-llama/Meta-Llama-3-70B",
    "llama-3.1-405b": "meta-llama/Llama-3.1-405B",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "mixtral-8x7b": "mistralai/Mixtral-8x7B-v0.1",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B",
    "qwen2.5-72b": "Qwen/Qwen2.5-72B",
    "falcon-40b": "tiiuae/falcon-40b",
    "phi-3-mini-4k": "microsoft/Phi-3-mini-4k-instruct",
    "gemma-2-9b": "google/gemma-2-9b",
}


def facts(short_name):
    return facts_from_local(MODELS / short_name / "config.json", PARAMS[short_name], model_id=MODEL_IDS[short_name])


def llama_405b():
    return facts("llama-3.1-405b")  # 126 layers, 128 heads, 8 KV heads, hidden 16384, vocab 128256, untied

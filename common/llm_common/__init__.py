"""What the operator and the runtime both need, and nothing else.

A leaf: it imports neither llm_operator nor llm_runtime, only the standard library
(huggingface_hub inside the functions that classify Hub errors). Model facts from
config.json, Hub errors as sentences, the weight cache's layout, the LoRA adapter entries,
and the engines' pure argv builders.
"""

"""Manifests shared by unit and integration tests."""

from __future__ import annotations

import json

import yaml

from support.paths import DATA, ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def invalid_cases() -> list[dict]:
    return yaml.safe_load((DATA / "invalid-manifests.yaml").read_text())


def manifest_for(case: dict) -> dict:
    return {
        "apiVersion": "llm-operator.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": case.get("metadata", {"name": "invalid"}),
        "spec": case["spec"],
    }


def llmd(name: str, **spec) -> dict:
    spec.setdefault("model", {"id": "org/model"})
    return {"apiVersion": "llm-operator.io/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": name}, "spec": spec}


# The weight cache's model: test/cached-only is on no Hub, and its facts are the ones the
# download pod reports in its termination message, as llm-runtime download writes them (kwok
# ends the pod with them: its pod-complete stage's message annotation).
CACHED_MODEL = "test/cached-only"
CACHED_FACTS = {
    "modelId": CACHED_MODEL,
    "revision": "main",
    "numLayers": 28,
    "hiddenSize": 3584,
    "numAttentionHeads": 28,
    "numKeyValueHeads": 4,
    "headDim": 128,
    "vocabSize": 152064,
    "maxPositionEmbeddings": 131072,
    "torchDtype": "bfloat16",
    "quantizationConfig": None,
    "numExperts": 0,
    "numExpertsPerTok": 0,
    "intermediateSize": 18944,
    "parameterCount": 7615616512,
    "parameterCountEstimated": False,
    "tieWordEmbeddings": False,
    "modelType": "qwen2",
    "commit": "abc123",
}
# The StorageClass of the `volume` fixture (conftest.py): no provisioner, volumes bound ahead.
CACHE_STORAGE_CLASS = "local-cache"


def cached(name: str, model: str = CACHED_MODEL, **download_annotations) -> str:
    """Cached weights; the annotations (kwok's stages: how the download pod ends) go on the download pod."""
    cache = {"enabled": True, "size": "100Gi", "storageClassName": CACHE_STORAGE_CLASS}
    if download_annotations:
        cache["podAnnotations"] = download_annotations
    return json.dumps(llmd(name, model={"id": model}, gpus=1, cache=cache))

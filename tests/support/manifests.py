"""Manifests shared by unit and integration tests."""

from __future__ import annotations

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
    return {"apiVersion": "llm-operator.io/v1alpha1", "kind": "LLMDeployment",
            "metadata": {"name": name}, "spec": spec}

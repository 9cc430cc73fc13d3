"""`llm-operator render` is what the operator applies: every example, and one with
adapters and no `gpus` (the planner picks), rendered with the same facts the operator
reads (the same Hub stand-in, the cluster's largest GPU) equal the live children."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from support.cluster import children
from support.manifests import EXAMPLES, llmd
from support.paths import ROOT

pytestmark = pytest.mark.usefixtures("operator")

HASH = "llm-operator.io/desired-hash"
KINDS = {
    "deployments": "Deployment",
    "services": "Service",
    "poddisruptionbudgets": "PodDisruptionBudget",
    "jobs": "Job",
    "persistentvolumeclaims": "PersistentVolumeClaim",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
}
WITH_ADAPTERS = llmd(
    "adapted",
    model={"id": "test/mistral-7b"},
    adapters=[{"name": "support", "id": "test/support-lora"}, {"name": "sql", "id": "test/sql-lora", "revision": "v1"}],
)
CASES = [pytest.param(yaml.safe_load(p.read_text()), id=p.stem) for p in EXAMPLES] + [
    pytest.param(WITH_ADAPTERS, id="adapters-no-gpus")
]


def render(live: dict, hub) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "llm_operator.cli", "render", "-f", "-", "--hub", "--gpu", "h100-80gb"],
        input=json.dumps(live),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.mark.parametrize("manifest", CASES)
def test_render_equals_what_the_operator_applied(kubectl, hub, manifest):
    name = manifest["metadata"]["name"]
    kubectl.apply(json.dumps(manifest))
    kubectl.run("wait", "--for=condition=Ready", f"llmd/{name}", "--timeout=60s")
    live_owner = kubectl.get("llmd", name)
    rendered = render(live_owner, hub)
    live = {
        (KINDS[plural], n): kubectl.get(plural, n) for plural, names in children(kubectl, name).items() for n in names
    }
    assert sorted(live) == sorted((d["kind"], d["metadata"]["name"]) for d in rendered)
    for doc in rendered:
        obj = live[(doc["kind"], doc["metadata"]["name"])]
        # The hash covers the whole desired object: equal hashes, equal objects.
        assert obj["metadata"]["annotations"][HASH] == doc["metadata"]["annotations"][HASH], doc["kind"]
    served = live.get(("Deployment", name))
    if served is not None:
        # The engine itself, never the image's word-splitting entrypoint script.
        engine = (live_owner["spec"].get("engine") or {}).get("name", "tgi")
        assert served["spec"]["template"]["spec"]["containers"][0]["command"] == (
            ["vllm", "serve"] if engine == "vllm" else ["text-generation-launcher"]
        )
    if name == "adapted":
        args = next(d for d in rendered if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0][
            "args"
        ]
        assert args[args.index("--lora-adapters") + 1] == "test/support-lora@main,test/sql-lora@v1"
        assert live_owner["status"]["plan"]["known"] is True and live_owner["status"]["gpus"] == 1

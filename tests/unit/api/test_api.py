"""The typed spec and the generated CRD (issue 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from llm_operator import api
from llm_operator.api import crd
from support.manifests import EXAMPLES, invalid_cases, manifest_for
from support.paths import ROOT

CASES = invalid_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_invalid_manifests_are_refused_naming_the_field(case):
    with pytest.raises(api.InvalidSpec) as err:
        api.validate_manifest(manifest_for(case))
    # pydantic writes list indexes as .0.; the apiserver as [0]: compare the path before it.
    assert case["field"] in str(err.value), str(err.value)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_are_valid(path):
    for doc in yaml.safe_load_all(path.read_text()):
        api.validate_manifest(doc)


def test_defaults():
    spec = api.parse_spec({"model": {"id": "org/m"}})
    assert spec.quantization == "none" and spec.dtype == "auto" and spec.gpus is None
    assert spec.model.revision == "main" and spec.replicas == 1
    assert spec.autoscaling.mode == "none" and not spec.autoscaled
    assert spec.gpu.resource == "nvidia.com/gpu" and spec.service.port == 80


def test_min_replicas_0_is_for_mode_operator_only():
    spec = api.parse_spec(
        {
            "model": {"id": "org/m"},
            "replicas": 0,
            "autoscaling": {"mode": "operator", "minReplicas": 0, "maxReplicas": 2},
        }
    )
    assert (spec.replicas, spec.autoscaling.min_replicas) == (0, 0)
    with pytest.raises(api.InvalidSpec) as err:
        api.parse_spec({"model": {"id": "org/m"}, "autoscaling": {"mode": "hpa", "minReplicas": 0}})
    assert str(err.value) == (
        "spec.autoscaling.minReplicas: minReplicas 0 needs mode operator: a HorizontalPodAutoscaler cannot scale to "
        "zero (without Kubernetes' alpha HPAScaleToZero feature gate) and mode none ignores autoscaling; set mode: "
        "operator, or minReplicas to 1 or more."
    )
    assert api.WOKEN_ANNOTATION == "llm-operator.io/woken-by-request-at"


def test_rules_agree_with_their_cel_text():
    """Each rule's Python check and CEL mention the same fields."""
    for model in api.RuledModel.__subclasses__():
        for rule in model.__rules__:
            field = rule.field_path.lstrip(".")
            assert field in rule.cel, (model.__name__, rule.cel)
            assert field in rule.message, (model.__name__, rule.message)


def test_crd_file_is_the_generated_output():
    out = subprocess.run(
        [sys.executable, "-m", "llm_operator.cli", "crd"], capture_output=True, text=True, check=True
    ).stdout
    assert (ROOT / "crds" / "llmdeployments.yaml").read_text() == out, "run `make crds` and commit the result"


def test_crd_shape():
    c = crd.crd()
    spec = c["spec"]
    assert spec["names"]["shortNames"] == ["llmd", "llm"]
    version = spec["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert "status" in version["subresources"]
    columns = {col["name"]: col for col in version["additionalPrinterColumns"]}
    assert list(columns) == ["Model", "Engine", "Quant", "GPUs", "Ready", "Phase", "Reason", "URL", "Message", "Age"]
    assert (
        columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
        and "priority" not in columns["Reason"]
    )
    assert (
        columns["Message"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].message'
        and columns["Message"]["priority"] == 1
    )
    props = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert props["quantization"]["enum"] == [q.value for q in api.Quantization]
    assert props["gpus"]["minimum"] == 1 and props["gpus"]["maximum"] == 16
    rules = [r["rule"] for r in version["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]]
    assert any("exl2" in r for r in rules) and any("dtype" in r for r in rules)


def test_every_schema_field_is_described():
    def walk(node, path):
        for name, sub in (node.get("properties") or {}).items():
            if name != "metadata":
                assert sub.get("description"), f"{path}.{name}"
            walk(sub, f"{path}.{name}")
        if "items" in node:
            walk(node["items"], path + "[]")

    walk(crd.openapi_schema(), "")


def test_schema_is_structural():
    """No JSON Schema constructs the apiserver refuses in a structural schema."""
    text = yaml.safe_dump(crd.crd())
    for banned in ("$ref", "anyOf", "allOf", "oneOf", "title:", "const:"):
        assert banned not in text, banned


@pytest.mark.parametrize(
    "engine, message",
    [
        (
            {"args": ["--max-model-len", "4096"]},
            "spec.engine.args: engine.args: --max-model-len is not a flag of the TGI "
            "3.3.7 launcher; engine.args may use --validation-workers, ",
        ),
        (
            {"args": ["--num-shard", "4"]},
            "spec.engine.args: engine.args must not give --sharded or --num-shard: the operator "
            "sets them from spec.gpus; set that instead.",
        ),
        (
            {"args": ["--max-input-length=10"]},
            "spec.engine.args: engine.args must not give --max-input-tokens or "
            "--max-input-length: the operator sets them from spec.limits.maxInputTokens",
        ),
        (
            {"args": ["-p", "80"]},
            "spec.engine.args: engine.args must not give --hostname, --port or --json-output: the "
            "operator sets them: the pods listen on 0.0.0.0:8080",
        ),
        (
            {"env": [{"name": "SHARDED", "value": "true"}, {"name": "LOG_LEVEL", "value": "debug"}]},
            "spec.engine.env: engine.env must not set SHARDED: the TGI launcher reads it as a flag; set the spec field that "
            "owns the setting, or give the flag in engine.args.",
        ),
    ],
)
def test_engine_rules_name_what_is_wrong_and_what_to_do(engine, message):
    with pytest.raises(api.InvalidSpec) as err:
        api.parse_spec({"model": {"id": "org/m"}, "engine": engine})
    assert str(err.value).startswith(message), str(err.value)


def test_engine_args_the_launcher_takes_are_accepted():
    spec = api.parse_spec(
        {
            "model": {"id": "org/m"},
            "engine": {
                "args": [
                    "--cuda-graphs",
                    "1,2",
                    "--cors-allow-origin",
                    "a",
                    "--cors-allow-origin",
                    "b",
                    "--otlp-service-name",
                    "my model",
                ],
                "env": [{"name": "LOG_LEVEL", "value": "debug"}, {"name": "NCCL_DEBUG", "value": "INFO"}],
            },
        }
    )
    assert spec.engine.args[-1] == "my model"


def test_the_dtype_rule_takes_its_quantizations_from_the_launcher_table():
    from llm_common import tgi_rules

    assert api.DTYPE_COMPATIBLE_QUANTIZATIONS == ("none", *tgi_rules.DTYPE_WITH_QUANTIZE)
    assert set(api.tgi.QUANTIZATIONS) - {"none"} == set(tgi_rules.QUANTIZE_CHOICES)

"""api.py -> the LLMDeployment CustomResourceDefinition.

pydantic's JSON Schema is turned into a structural OpenAPI v3 schema: references
inlined, optionals made plain optional properties, titles dropped, defaults kept, and
each model's cross-field `Rule`s attached as CEL `x-kubernetes-validations`.
"""

from __future__ import annotations

from typing import Any

import yaml

from llm_operator import api

# JSON Schema keywords a structural CRD schema accepts as they are.
_KEEP = {
    "type",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "format",
    "x-kubernetes-validations",
    "x-kubernetes-preserve-unknown-fields",
}

_RULED_MODELS = {cls.__name__: cls for cls in api.RuledModel.__subclasses__()}


def _openapi(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One JSON Schema node -> one structural OpenAPI v3 node."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        out: dict[str, Any] = _openapi(defs[name], defs)
        if name in _RULED_MODELS:
            out["x-kubernetes-validations"] = [r.to_cel() for r in _RULED_MODELS[name].__rules__]
        for key in ("description", "default"):
            if key in node:
                out[key] = node[key]
        return out
    if "anyOf" in node:
        # `X | None`: the property is simply optional.
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {node}")
        out = _openapi(options[0], defs)
        for key in ("description",):
            if key in node:
                out[key] = node[key]
        if node.get("default") is not None:
            out["default"] = node["default"]
        return out
    if "const" in node:
        node = {**node, "enum": [node["const"]]}
    if "enum" in node and "type" not in node:
        node = {**node, "type": "string"}
    out = {k: v for k, v in node.items() if k in _KEEP}
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if props is not None:
            out["properties"] = {k: _openapi(v, defs) for k, v in props.items()}
            if node.get("required"):
                out["required"] = list(node["required"])
        elif isinstance(extra, dict) and extra:
            out["additionalProperties"] = _openapi(extra, defs)
        else:
            # Free-form (an Affinity, say): kept as the user wrote it.
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        out["items"] = _openapi(node["items"], defs)
    elif kind == "number":
        out["type"] = "number"
    return out


def _model_schema(cls: type[api.Model]) -> dict[str, Any]:
    schema = cls.model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")
    defs = schema.pop("$defs", {})
    out = _openapi(schema, defs)
    if cls.__name__ in _RULED_MODELS:
        out["x-kubernetes-validations"] = [r.to_cel() for r in _RULED_MODELS[cls.__name__].__rules__]
    return out


def _check_described(node: dict[str, Any], path: str = "") -> None:
    """Every field has a description, so `kubectl explain` reads well."""
    for name, sub in (node.get("properties") or {}).items():
        if not sub.get("description") and name != "metadata":
            raise ValueError(f"field {path}.{name} has no description in api.py")
        _check_described(sub, f"{path}.{name}")
    if "items" in node:
        _check_described(node["items"], f"{path}[]")


def openapi_schema() -> dict[str, Any]:
    spec = _model_schema(api.LLMDeploymentSpec)
    status = _model_schema(api.LLMDeploymentStatus)
    # Conditions are a map keyed by type for server-side apply and strategic merges.
    status["properties"]["conditions"]["x-kubernetes-list-type"] = "map"
    status["properties"]["conditions"]["x-kubernetes-list-map-keys"] = ["type"]
    spec["description"] = api.LLMDeploymentSpec.__doc__
    status["description"] = api.LLMDeploymentStatus.__doc__
    # Before the operator's first write, an object reads as not yet observed: with no status at
    # all, kstatus (Flux's wait) calls it Current at once; with observedGeneration 0 behind
    # generation it is InProgress. The apiserver fills the default in on create and on read.
    status["default"] = {"observedGeneration": 0}
    schema = {
        "type": "object",
        "description": "A large language model served by GPU pods running Text Generation Inference, behind a Service.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            # Structural schemas allow rules on metadata.name (and nothing else in metadata):
            # a rule placed there is reported as "metadata.name: Invalid value: ...".
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string",
                        "description": "Name of the LLMDeployment; also the name of its Deployment and Service.",
                        "x-kubernetes-validations": [{"rule": api.NAME_RULE.cel, "message": api.NAME_RULE.message}],
                    }
                },
            },
            "spec": spec,
            "status": status,
        },
    }
    _check_described(schema)
    return schema


PRINTER_COLUMNS = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.id", "description": "Hub model id."},
    {"name": "Engine", "type": "string", "jsonPath": ".status.engine", "description": "Serving engine (tgi or vllm)."},
    {"name": "Quant", "type": "string", "jsonPath": ".spec.quantization", "description": "Quantization."},
    {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus", "description": "GPUs per replica."},
    {"name": "Ready", "type": "string", "jsonPath": ".status.ready", "description": "Ready replicas / replicas."},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "One-word summary."},
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "description": "Why it is (not) Ready: the Ready condition's reason.",
    },
    {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1, "description": "In-cluster URL."},
    {
        "name": "Message",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
        "priority": 1,
        "description": "The Ready condition's message (kubectl get -o wide).",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "labels": {"app.kubernetes.io/name": "llm-operator", "app.kubernetes.io/part-of": "llm-operator"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": ["all", "llm"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


class _NoAliases(yaml.SafeDumper):
    """A model used in two places (a toleration, say) shares its lists in the schema: written out
    in both places, not as YAML anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def crd_yaml() -> str:
    header = "# Generated by `llm-operator crd` from operator/llm_operator/api/spec.py. Do not edit.\n"
    return header + yaml.dump(crd(), Dumper=_NoAliases, sort_keys=False, width=120)

"""Literal observations of one LLMDeployment for the tests of decide() (test_decide.py,
test_cache_step.py, test_writes.py, test_placement.py): the spec, the children, pods and
nodes as the read model holds them, and the look-ups."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from llm_operator import api
from llm_operator.decide import manifests as resources
from llm_operator.decide.decision import Lookups
from llm_operator.decide.observed import Observed, trim_child
from llm_operator.facts import lookup as facts
from llm_operator.facts.hub import ModelFacts
from llm_operator.planning.memory import default_max_total_tokens

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


UID = "uid-1"


OWNER = resources.Owner("m", "ns", UID)


H100 = {
    "metadata": {
        "name": "gpu-1",
        "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.memory": "81559"},
    },
    "status": {"allocatable": {"nvidia.com/gpu": "8"}},
}


MISTRAL = {
    "modelId": "org/mistral",
    "revision": "main",
    "numLayers": 32,
    "hiddenSize": 4096,
    "numAttentionHeads": 32,
    "numKeyValueHeads": 8,
    "headDim": 128,
    "vocabSize": 32000,
    "maxPositionEmbeddings": 32768,
    "torchDtype": "bfloat16",
    "intermediateSize": 14336,
    "parameterCount": 7241732096,
    "modelType": "mistral",
}


LLAMA_70B = {
    **MISTRAL,
    "modelId": "org/llama-70b",
    "numLayers": 80,
    "hiddenSize": 8192,
    "numAttentionHeads": 64,
    "intermediateSize": 28672,
    "vocabSize": 128256,
    "parameterCount": 70553706496,
    "modelType": "llama",
}


KNOWN = Lookups(facts=facts.FactsAnswer(ModelFacts.from_dict(MISTRAL), facts.HUB))


UNKNOWN = Lookups(facts=facts.FactsAnswer(None, facts.UNAVAILABLE, "The Hub cannot be reached."))


PENDING = Lookups(facts=facts.FactsAnswer(None, facts.PENDING, "Reading the facts of org/mistral@main from the Hub."))


def llmd(spec: dict | None = None, status: dict | None = None, generation: int = 1, **meta) -> dict:
    return {
        "metadata": {"name": "m", "namespace": "ns", "uid": UID, "generation": generation, **meta},
        "spec": {"model": {"id": "org/mistral"}, "gpus": 1, **(spec or {})},
        "status": status or {},
    }


def observed(spec=None, status=None, children=(), pods=(), **kw) -> Observed:
    by_kind: dict = {}
    for c in children:
        by_kind.setdefault(c["kind"], []).append(trim_child(c))
    return Observed(
        llmd=llmd(spec, status, **kw.pop("meta", {})),
        children={k: tuple(v) for k, v in by_kind.items()},
        pods=tuple(pods),
        nodes=(H100,),
        **kw,
    )


def known_decisions(spec: api.LLMDeploymentSpec) -> resources.Decisions:
    """The decisions decide() makes for `spec` on one GPU with KNOWN (Mistral's facts)."""
    facts = ModelFacts.from_dict(MISTRAL)
    tokens = spec.limits.max_total_tokens or default_max_total_tokens(facts)
    return resources.Decisions(gpus=1, max_total_tokens=tokens, checkpoint_quantization=facts.quant_method)


def live_deployment(spec=None, ready=1, replicas=1):
    parsed = parsed_spec(spec)
    d = resources.desired_deployment(OWNER, parsed, known_decisions(parsed))
    d["metadata"]["generation"] = 1
    d["status"] = {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas, "observedGeneration": 1}
    return d


def serving_pod(deployment, ready=True, name="m-1"):
    """A pod of the live Deployment's current pod template."""
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return {
        "metadata": {"name": name, "labels": dict(labels)},
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ]
        },
    }


def live_service(spec=None, nodes=1):
    return resources.desired_children(OWNER, parsed_spec(spec), resources.Decisions(gpus=1, nodes=nodes))[0]


def parsed_spec(spec=None):
    return api.parse_spec({"model": {"id": "org/mistral"}, "gpus": 1, **(spec or {})})


def kinds(objs) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in objs]


def cond(decision, ctype="Ready"):
    c = next(c for c in decision.status["conditions"] if c["type"] == ctype)
    return c["status"], c["reason"], c["message"]


CACHE = {"cache": {"enabled": True, "size": "100Gi", "storageClassName": "fast"}}


FAST = ({"name": "fast", "default": False},)


def claim(phase="Bound"):
    c = resources.desired_cache_claim(OWNER, parsed_spec(CACHE))
    c["status"] = {"phase": phase}
    c["metadata"]["creationTimestamp"] = "2025-12-31T23:58:00Z"
    return c


def job(condition=None, spec=CACHE):
    j = resources.desired_download_job(OWNER, parsed_spec(spec))
    j["status"] = (
        {"conditions": [{"type": condition, "status": "True", "reason": "X", "message": "y"}]} if condition else {}
    )
    return j


def job_pod(spec=CACHE, message=None):
    name = resources.download_job_name(OWNER, parsed_spec(spec))
    return {
        "metadata": {"name": f"{name}-abc", "labels": {"job-name": name}, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {"containerStatuses": [{"state": {"terminated": {"message": message}}}]} if message else {},
    }


def unschedulable_pod(name="m-2"):
    return {
        "metadata": {"name": name, "labels": {"llm-operator.io/name": "m"}},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/5 nodes are available: 5 Insufficient nvidia.com/gpu.",
                }
            ]
        },
    }


def served(spec):
    """Cache on, the Job done, serving one ready pod."""
    live = live_deployment(spec)
    return [live_service(spec), claim(), job("Complete"), live], [serving_pod(live)]


H100_B = {**H100, "metadata": {**H100["metadata"], "name": "gpu-2"}}


MULTI = {"engine": {"name": "vllm"}, "gpus": 8, "nodes": 2}


def live_lws(spec=None, ready=1, replicas=1):
    s = parsed_spec({**MULTI, **(spec or {})})
    lws = next(
        c
        for c in resources.desired_children(OWNER, s, resources.Decisions(gpus=8, nodes=2))
        if c["kind"] == "LeaderWorkerSet"
    )
    lws["metadata"]["generation"] = 1
    lws["status"] = {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas, "observedGeneration": 1}
    return lws


def group_pod(lws, group: int, worker: int, ready=True, scheduled=True):
    """A pod of a live LeaderWorkerSet's group, labelled as LWS's webhook labels it."""
    role = "workerTemplate" if worker else "leaderTemplate"
    labels = {
        **lws["spec"]["leaderWorkerTemplate"][role]["metadata"]["labels"],
        "leaderworkerset.sigs.k8s.io/group-index": str(group),
        "leaderworkerset.sigs.k8s.io/worker-index": str(worker),
    }
    name = f"m-{group}" + (f"-{worker}" if worker else "")
    conditions = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True" if ready else "False"}]
    if not scheduled:
        conditions = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/5 nodes are available: 2 Insufficient nvidia.com/gpu.",
            }
        ]
    return {"metadata": {"name": name, "labels": labels}, "status": {"conditions": conditions}}


def multi(spec=None, children=(), pods=(), nodes=(H100, H100_B), multi_node=True) -> Observed:
    return replace(
        observed(spec={**MULTI, **(spec or {})}, children=children, pods=pods), nodes=nodes, multi_node=multi_node
    )

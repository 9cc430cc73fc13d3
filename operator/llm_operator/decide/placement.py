"""Pure: where the serving pods can run.

A replica on several nodes is a LeaderWorkerSet group: it needs the operator's
LeaderWorkerSet support and enough nodes that could ever hold it, judged before anything is
made. A serving pod the scheduler cannot place either waits for GPUs to free up, or no node
could ever hold it: said in status (WaitingForGPUs, or NoNodeFits and Stalled).
"""

from __future__ import annotations

from typing import Any

from llm_operator import api
from llm_operator.api.conditions import Verdict
from llm_operator.decide.manifests import Owner, pod_affinity, pod_tolerations, selector_labels
from llm_operator.decide.observed import Observed
from llm_operator.decide.pods import unschedulable_pods
from llm_operator.planning import admission

LWS_INSTALL = (
    "kubectl apply --server-side -f https://github.com/kubernetes-sigs/lws/releases/download/v0.9.0/manifests.yaml"
)


def serving_pods(observed: Observed, owner: Owner) -> tuple[dict[str, Any], ...]:
    """The serving pods (the download Job's pods carry no selector label)."""
    return observed.pods_labelled(selector_labels(owner))


def pod_rules(spec: api.LLMDeploymentSpec) -> admission.PodRules:
    """The serving pods' nodeSelector, tolerations and affinity, as the operator renders them
    (the GPU taint tolerated, the GPU product required in every node selector term)."""
    return admission.PodRules(dict(spec.scheduling.node_selector), pod_tolerations(spec), pod_affinity(spec) or {})


def cluster_for_plan(observed: Observed, spec: api.LLMDeploymentSpec) -> admission.Cluster | None:
    """The nodes the serving pods may use, by every scheduling rule but the GPU product (which
    a remedy may change), for remedies the cluster can carry out; None while no node is seen."""
    if not observed.nodes:
        return None
    rules = admission.PodRules(dict(spec.scheduling.node_selector), pod_tolerations(spec), spec.scheduling.affinity)
    shapes = admission.node_shapes(observed.nodes, spec.gpu.resource, rules)
    return admission.Cluster(shapes, spec.gpu.product, observed.multi_node)


def _no_node_fits(observed: Observed, spec: api.LLMDeploymentSpec, gpus: int, nodes: int) -> str | None:
    return admission.no_node_fits(observed.nodes, spec.gpu.resource, gpus, spec.gpu.product, pod_rules(spec), nodes)


def multi_node_problem(observed: Observed, spec: api.LLMDeploymentSpec, gpus: int, nodes: int) -> Verdict | None:
    """Why a replica of `nodes` pods cannot be run here: the operator does not run them (its
    LeaderWorkerSet support is off), or too few nodes could ever hold the group."""
    if not observed.multi_node:
        return Verdict(
            "False",
            "MultiNodeOff",
            (
                f"A replica on {nodes} nodes runs as a LeaderWorkerSet group, and this operator does not make "
                "LeaderWorkerSets: install LeaderWorkerSet in the cluster (" + LWS_INSTALL + ") and enable it in the "
                "operator (Helm value lws.enabled=true, or `llm-operator run --leaderworkersets`); or serve on one "
                "node (spec.nodes: 1, with an 8-bit quantization if the model needs it)."
            ),
        )
    few = _no_node_fits(observed, spec, gpus, nodes)
    if few is not None:
        return Verdict("False", "NoNodeFits", f"Cannot run a replica on {nodes} nodes: {few}")
    return None


def no_node_fits(
    observed: Observed, spec: api.LLMDeploymentSpec, gpus: int, nodes: int, pods: tuple[dict[str, Any], ...]
) -> str | None:
    """Of serving pods the scheduler cannot place: why no node could ever hold one. None when
    every pod is placed, or when some node could hold them once GPUs free up (they wait)."""
    if not unschedulable_pods(pods):
        return None
    return _no_node_fits(observed, spec, gpus, nodes)

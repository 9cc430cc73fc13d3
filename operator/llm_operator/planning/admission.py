"""Could any node ever admit a serving pod? The cluster's nodes judged by the rules of the
scheduler that load does not change: the GPUs a node offers (the product label and the
allocatable count), the nodeSelector, the required node affinity, and the node's taints
against the pod's tolerations; and, for the planner's remedies, the shapes (GPU product and
count) of the nodes a pod may use. Pure.

The rules are the scheduler's own (NodeResourcesFit, NodeAffinity, TaintToleration):
- a taint with effect NoSchedule or NoExecute keeps a pod off unless one of its tolerations
  tolerates it (same effect or none named; same key, or no key with operator Exists; operator
  Exists, or Equal with the same value); PreferNoSchedule never keeps a pod off;
- every label of the nodeSelector must be on the node;
- of the required node affinity's nodeSelectorTerms one must match (terms ORed), and a term
  matches when all its matchExpressions (In, NotIn, Exists, DoesNotExist, Gt, Lt on labels)
  and matchFields (metadata.name) do (ANDed); a term with neither matches no node.

A node that is tainted for a while must not make a pod read as 'never': the taints that
Kubernetes itself puts on a node and takes off again with its state (node.kubernetes.io/...:
unschedulable while cordoned, not-ready, unreachable, memory-, disk- and pid-pressure,
network-unavailable, out-of-service; node.cloudprovider.kubernetes.io/...: uninitialized,
shutdown) and the cluster autoscalers' taints on a node they are about to remove are not
judged. Only the taints someone put on a node on purpose (dedicated=infer:NoSchedule) are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_common.words import noun, plural
from llm_operator.planning.gpus import GPU_PRODUCT_LABEL, GpuType, gpu_type_from_node_labels

# Set and lifted by Kubernetes with the node's state (k8s.io/api/core/v1 well_known_taints.go).
TRANSIENT_TAINT_PREFIXES = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/")
# Put on a node the autoscaler is about to remove: its replacement is judged when it comes.
TRANSIENT_TAINTS = frozenset({"ToBeDeletedByClusterAutoscaler", "karpenter.sh/disrupted"})
# The effects that keep a pod off; PreferNoSchedule only steers.
BARRING_EFFECTS = ("NoSchedule", "NoExecute")


@dataclass(frozen=True)
class PodRules:
    """What a serving pod tells the scheduler about nodes, as the operator renders it: the
    nodeSelector, the tolerations, and the affinity (wire form)."""

    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)


def _labels(node: Mapping[str, Any]) -> Mapping[str, str]:
    return (node.get("metadata") or {}).get("labels") or {}


def allocatable(node: Mapping[str, Any], resource: str) -> int:
    value = ((node.get("status") or {}).get("allocatable") or {}).get(resource, "0")
    try:
        return int(value)
    except ValueError:  # GPUs are whole numbers; anything else offers none
        return 0


# --- taints and tolerations ----------------------------------------------------------------


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """The scheduler's Toleration.ToleratesTaint (k8s.io/api/core/v1/toleration.go)."""
    effect, key = toleration.get("effect") or "", toleration.get("key") or ""
    if effect and effect != taint.get("effect"):
        return False
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def transient(taint: Mapping[str, Any]) -> bool:
    """A taint Kubernetes (or an autoscaler) puts on a node for a while (the module says which)."""
    key = taint.get("key") or ""
    return key in TRANSIENT_TAINTS or key.startswith(TRANSIENT_TAINT_PREFIXES)


def untolerated_taints(node: Mapping[str, Any], tolerations: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The node's lasting taints that keep the pod off: none of its tolerations tolerates them."""
    return [
        taint
        for taint in (node.get("spec") or {}).get("taints") or []
        if taint.get("effect") in BARRING_EFFECTS
        and not transient(taint)
        and not any(tolerates(t, taint) for t in tolerations)
    ]


def taint_text(taint: Mapping[str, Any]) -> str:
    """As kubectl writes it: key=value:Effect, or key:Effect without a value."""
    value = taint.get("value")
    return f"{taint.get('key')}{'=' + value if value else ''}:{taint.get('effect')}"


# --- node affinity -------------------------------------------------------------------------


def _requirement_matches(requirement: Mapping[str, Any], value: str | None) -> bool:
    """One node selector requirement against the node's value for its key (None: absent).
    An operator or value the apiserver would refuse matches nothing, as in the scheduler."""
    operator, values = requirement.get("operator"), list(requirement.get("values") or [])
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            have, bound = int(value), int(values[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


def _failing_requirement(term: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The first requirement of a nodeSelectorTerm the node fails, or None when it matches."""
    labels, name = _labels(node), (node.get("metadata") or {}).get("name")
    expressions: list[Mapping[str, Any]] = list(term.get("matchExpressions") or [])
    fields: list[Mapping[str, Any]] = list(term.get("matchFields") or [])
    for requirement in expressions:
        if not _requirement_matches(requirement, labels.get(requirement.get("key") or "")):
            return requirement
    for requirement in fields:
        # metadata.name is the one field the scheduler matches nodes by.
        value = name if requirement.get("key") == "metadata.name" else None
        if requirement.get("key") != "metadata.name" or not _requirement_matches(requirement, value):
            return requirement
    return None


def _term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    if not term.get("matchExpressions") and not term.get("matchFields"):
        return False  # a null or empty term matches no node
    return _failing_requirement(term, node) is None


def _required_terms(affinity: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The required node affinity's nodeSelectorTerms; None when there is none."""
    required = (affinity.get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return None
    return list(required.get("nodeSelectorTerms") or [])


def requirement_text(requirement: Mapping[str, Any]) -> str:
    """matchExpressions' 'zone In (a, b)', 'gpu-pool Exists'."""
    values = requirement.get("values") or []
    listed = f" ({', '.join(str(v) for v in values)})" if values else ""
    return f"{requirement.get('key')} {requirement.get('operator')}{listed}"


# --- one node, every rule -------------------------------------------------------------------


def excluded_by(node: Mapping[str, Any], rules: PodRules) -> tuple[str, str] | None:
    """Why the pod can never be admitted to this node, by the first rule that keeps it off,
    as a verb phrase for one node and for several ("has ..."/"have ..."); None when none does."""
    labels = _labels(node)
    missing = [f"{k}={v}" for k, v in sorted(rules.node_selector.items()) if labels.get(k) != v]
    if missing:
        what = f"{noun(len(missing), 'label')} {', '.join(missing)} of spec.scheduling.nodeSelector"
        return f"lacks the {what}", f"lack the {what}"
    terms = _required_terms(rules.affinity)
    if terms is not None and not any(_term_matches(t, node) for t in terms):
        of = "the required node affinity (spec.scheduling.affinity)"
        if len(terms) == 1:
            failing = _failing_requirement(terms[0], node)
            detail = f"{of}: {requirement_text(failing)}" if failing else f"{of} (its one nodeSelectorTerm is empty)"
        elif terms:
            detail = f"any of the {len(terms)} nodeSelectorTerms of {of}"
        else:
            detail = f"{of} (it has no nodeSelectorTerms)"
        return f"does not match {detail}", f"do not match {detail}"
    barring = untolerated_taints(node, rules.tolerations)
    if barring:
        taints = " and ".join(taint_text(t) for t in sorted(barring, key=taint_text))
        what = f"{noun(len(barring), 'taint')} {taints}, which the pods do not tolerate"
        return f"has the {what}", f"have the {what}"
    return None


def admits(node: Mapping[str, Any], rules: PodRules) -> bool:
    """Could the scheduler ever place the pod on this node, GPUs aside?"""
    return excluded_by(node, rules) is None


# --- could any node ever hold a serving pod? ------------------------------------------------


def _offer(node: Mapping[str, Any], resource: str) -> str:
    count = allocatable(node, resource)
    return f"{count} x {_labels(node).get(GPU_PRODUCT_LABEL) or 'unlabelled'}" if count else f"no {resource}"


def no_node_fits(
    nodes: Sequence[Mapping[str, Any]], resource: str, gpus: int, product: str, rules: PodRules, group: int = 1
) -> str | None:
    """None when enough nodes could hold a serving pod (one; of a multi-node replica, `group`
    of them, one pod each), whether or not they have room now; else a sentence naming what a
    pod asks for, what the nodes offer, and the rule that keeps each kind of node offering
    enough GPUs off (the nodeSelector, the required node affinity, a taint)."""

    def enough(node: Mapping[str, Any]) -> bool:
        return allocatable(node, resource) >= gpus and (not product or _labels(node).get(GPU_PRODUCT_LABEL) == product)

    barred: Counter[tuple[str, tuple[str, str]]] = Counter()
    fitting = 0
    for node in nodes:
        if not enough(node):
            continue
        why = excluded_by(node, rules)
        if why is None:
            fitting += 1
        else:
            barred[(_offer(node, resource), why)] += 1
    if fitting >= group:
        return None
    asked = f"{gpus} {resource}" + (f" of product {product}" if product else "")
    if rules.node_selector:
        asked += " on a node labelled " + ",".join(f"{k}={v}" for k, v in sorted(rules.node_selector.items()))
    offers = Counter(_offer(node, resource) for node in nodes)
    have = ", ".join(f"{plural(n, 'node')} with {what}" for what, n in sorted(offers.items())) or "no nodes"
    have += "".join(f"; {plural(n, 'node')} with {what} {noun(n, *why)}" for (what, why), n in sorted(barred.items()))
    if group > 1:
        return (
            f"too few nodes could ever hold the group: a replica is {group} pods on {group} different nodes, each "
            f"asking for {asked}; {plural(fitting, 'node')} could hold one, and the cluster has {have}."
        )
    return f"no node could ever hold one: each pod asks for {asked}; the cluster has {have}."


# --- the shapes of the nodes a pod may use, for remedies the cluster can carry out ------------


@dataclass(frozen=True)
class NodeShape:
    """Nodes of one kind that the pods may be placed on: their GPU, its product label (what
    spec.gpu.product names) and the GPUs each offers."""

    gpu: GpuType
    product: str
    gpus: int  # allocatable per node
    count: int  # nodes of this shape


@dataclass(frozen=True)
class Cluster:
    """What a plan's remedies must fit: the shapes of the nodes the pods may use (every
    scheduling rule judged but the GPU product, which a remedy may change), the product the
    spec asks for ("" for any), and whether a replica may span nodes (LeaderWorkerSets)."""

    shapes: tuple[NodeShape, ...]
    product: str = ""
    multi_node: bool = False

    def nodes_with(self, gpu: GpuType, product: str, gpus: int) -> int:
        """How many nodes of this GPU (of this product, when one is named) offer `gpus` or more."""
        return sum(
            s.count
            for s in self.shapes
            if s.gpu.name == gpu.name and (not product or s.product == product) and s.gpus >= gpus
        )

    def described(self) -> str:
        """'2 with 4 x NVIDIA-L4, 1 with 8 x NVIDIA-H100-80GB-HBM3'."""
        return ", ".join(f"{s.count} with {s.gpus} x {s.product}" for s in self.shapes)


def node_shapes(nodes: Sequence[Mapping[str, Any]], resource: str, rules: PodRules) -> tuple[NodeShape, ...]:
    """The nodes the scheduler could ever place a pod with these rules on, that offer GPUs of a
    type the planner knows the memory of, by shape: largest GPU first, then most GPUs."""
    shapes: Counter[tuple[GpuType, str, int]] = Counter()
    for node in nodes:
        gpus = allocatable(node, resource)
        if gpus < 1 or not admits(node, rules):
            continue
        try:
            gpu = gpu_type_from_node_labels(_labels(node))
        except ValueError:  # UnknownGpuType (a product the table lacks, no memory label), a bad memory label
            continue
        if gpu is not None:
            shapes[(gpu, _labels(node)[GPU_PRODUCT_LABEL], gpus)] += 1
    ordered = sorted(shapes.items(), key=lambda kv: (-kv[0][0].memory_mib, kv[0][1], -kv[0][2]))
    return tuple(NodeShape(gpu, product, gpus, count) for (gpu, product, gpus), count in ordered)

"""Could any node ever admit a serving pod: taints against tolerations, the nodeSelector and the
required node affinity, judged as the scheduler judges them, with the rule named."""

from __future__ import annotations

from llm_operator.planning.admission import PodRules, admits, excluded_by, no_node_fits, tolerates

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def node(name, labels=None, taints=(), gpus=4, product="NVIDIA-L4"):
    return {
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product, **(labels or {})}},
        **({"spec": {"taints": list(taints)}} if taints else {}),
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}},
    }


DEDICATED = {"key": "dedicated", "value": "infer", "effect": "NoSchedule"}


def test_tolerations_match_taints_by_key_value_and_effect():
    assert tolerates({"key": "dedicated", "operator": "Equal", "value": "infer"}, DEDICATED)
    assert tolerates({"key": "dedicated", "value": "infer", "effect": "NoSchedule"}, DEDICATED)  # Equal by default
    assert not tolerates({"key": "dedicated", "operator": "Equal", "value": "train"}, DEDICATED)
    assert tolerates({"key": "dedicated", "operator": "Exists"}, DEDICATED)
    assert not tolerates({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, DEDICATED)
    assert not tolerates({"key": "other", "operator": "Exists"}, DEDICATED)
    assert tolerates({"operator": "Exists"}, DEDICATED)  # no key with Exists: every taint
    assert tolerates({"key": "", "operator": "Exists", "effect": "NoSchedule"}, DEDICATED)
    assert not tolerates({"key": "", "operator": "Exists", "effect": "NoExecute"}, DEDICATED)


def test_a_lasting_taint_the_pods_do_not_tolerate_is_named():
    rules = PodRules(tolerations=[GPU_TOLERATION])
    tainted = node("l4-0", taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}, DEDICATED])
    assert excluded_by(tainted, rules) == (
        "has the taint dedicated=infer:NoSchedule, which the pods do not tolerate",
        "have the taint dedicated=infer:NoSchedule, which the pods do not tolerate",
    )
    tolerated = PodRules(tolerations=[GPU_TOLERATION, {"key": "dedicated", "operator": "Equal", "value": "infer"}])
    assert admits(tainted, tolerated)


def test_the_gpu_toleration_for_noschedule_does_not_tolerate_noexecute():
    rules = PodRules(tolerations=[GPU_TOLERATION])
    evicting = node("l4-0", taints=[{"key": "nvidia.com/gpu", "effect": "NoExecute"}])
    assert excluded_by(evicting, rules)[0] == "has the taint nvidia.com/gpu:NoExecute, which the pods do not tolerate"


def test_prefernoschedule_and_the_taints_kubernetes_sets_for_a_while_never_bar_a_node():
    rules = PodRules(tolerations=[GPU_TOLERATION])
    passing = [
        {"key": "dedicated", "value": "infer", "effect": "PreferNoSchedule"},
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},  # cordoned
        {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"},
        {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"},
        {"key": "ToBeDeletedByClusterAutoscaler", "value": "1700000000", "effect": "NoSchedule"},
    ]
    assert admits(node("l4-0", taints=passing), rules)


def test_every_label_of_the_node_selector_must_be_on_the_node():
    rules = PodRules(node_selector={"pool": "inference", "zone": "a"})
    assert admits(node("n", {"pool": "inference", "zone": "a", "more": "x"}), rules)
    assert excluded_by(node("n", {"pool": "inference"}), rules)[0] == (
        "lacks the label zone=a of spec.scheduling.nodeSelector"
    )
    assert excluded_by(node("n"), rules)[1] == (
        "lack the labels pool=inference, zone=a of spec.scheduling.nodeSelector"
    )


def required(*terms):
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


def test_required_affinity_terms_are_ored_and_their_expressions_anded():
    rules = PodRules(
        affinity=required(
            {
                "matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a", "b"]},
                    {"key": "spot", "operator": "DoesNotExist"},
                ]
            },
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]},
        )
    )
    assert admits(node("n", {"zone": "b"}), rules)
    assert not admits(node("n", {"zone": "b", "spot": "true"}), rules)
    assert not admits(node("n", {"zone": "c"}), rules)
    assert admits(node("special", {"zone": "c"}), rules)
    assert excluded_by(node("n", {"zone": "c"}), rules)[0] == (
        "does not match any of the 2 nodeSelectorTerms of the required node affinity (spec.scheduling.affinity)"
    )


def test_each_operator_of_a_node_selector_requirement():
    def match(expression, labels):
        return admits(node("n", labels), PodRules(affinity=required({"matchExpressions": [expression]})))

    assert match({"key": "zone", "operator": "NotIn", "values": ["a"]}, {"zone": "b"})
    assert match({"key": "zone", "operator": "NotIn", "values": ["a"]}, {})  # absent is not in
    assert not match({"key": "zone", "operator": "NotIn", "values": ["a"]}, {"zone": "a"})
    assert match({"key": "zone", "operator": "Exists"}, {"zone": ""})
    assert not match({"key": "zone", "operator": "Exists"}, {})
    assert match({"key": "cores", "operator": "Gt", "values": ["16"]}, {"cores": "32"})
    assert not match({"key": "cores", "operator": "Gt", "values": ["16"]}, {"cores": "16"})
    assert match({"key": "cores", "operator": "Lt", "values": ["16"]}, {"cores": "8"})
    assert not match({"key": "cores", "operator": "Lt", "values": ["16"]}, {"cores": "many"})
    assert not match({"key": "cores", "operator": "Gt", "values": ["16"]}, {})
    assert not match({"key": "zone", "operator": "Near", "values": ["a"]}, {"zone": "a"})


def test_one_term_names_the_requirement_the_node_fails_and_an_empty_term_matches_nothing():
    one = PodRules(affinity=required({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}))
    assert excluded_by(node("n", {"zone": "c"}), one)[0] == (
        "does not match the required node affinity (spec.scheduling.affinity): zone In (a, b)"
    )
    assert not admits(node("n"), PodRules(affinity=required({})))
    assert admits(
        node("n"), PodRules(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}})
    )


def test_no_node_fits_names_the_taint_that_bars_each_kind_of_node():
    rules = PodRules(tolerations=[GPU_TOLERATION])
    nodes = [
        node("l4-0", taints=[DEDICATED]),
        node("l4-1", taints=[DEDICATED]),
        node("h100-0", gpus=8, product="NVIDIA-H100-80GB-HBM3", taints=[{"key": "team", "effect": "NoExecute"}]),
        {"metadata": {"name": "cpu-0", "labels": {}}, "status": {"allocatable": {}}},
    ]
    assert no_node_fits(nodes, "nvidia.com/gpu", 4, "", rules) == (
        "no node could ever hold one: each pod asks for 4 nvidia.com/gpu; the cluster has 2 nodes with "
        "4 x NVIDIA-L4, 1 node with 8 x NVIDIA-H100-80GB-HBM3, 1 node with no nvidia.com/gpu; 2 nodes with "
        "4 x NVIDIA-L4 have the taint dedicated=infer:NoSchedule, which the pods do not tolerate; 1 node with "
        "8 x NVIDIA-H100-80GB-HBM3 has the taint team:NoExecute, which the pods do not tolerate."
    )
    # Nodes with too few GPUs or another product are said by what they offer, not by their taints.
    assert no_node_fits(nodes, "nvidia.com/gpu", 8, "NVIDIA-L4", rules) == (
        "no node could ever hold one: each pod asks for 8 nvidia.com/gpu of product NVIDIA-L4; the cluster has "
        "2 nodes with 4 x NVIDIA-L4, 1 node with 8 x NVIDIA-H100-80GB-HBM3, 1 node with no nvidia.com/gpu."
    )
    tolerant = PodRules(tolerations=[GPU_TOLERATION, {"key": "dedicated", "operator": "Exists"}])
    assert no_node_fits(nodes, "nvidia.com/gpu", 4, "", tolerant) is None


def test_a_cordoned_or_not_ready_node_still_could_hold_a_pod():
    rules = PodRules(tolerations=[GPU_TOLERATION])
    cordoned = node(
        "l4-0",
        taints=[
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
        ],
    )
    assert no_node_fits([cordoned], "nvidia.com/gpu", 4, "NVIDIA-L4", rules) is None


def test_a_group_counts_only_the_nodes_every_rule_admits():
    rules = PodRules(tolerations=[GPU_TOLERATION])
    nodes = [node("l4-0"), node("l4-1", taints=[DEDICATED])]
    assert no_node_fits(nodes, "nvidia.com/gpu", 4, "NVIDIA-L4", rules, group=2) == (
        "too few nodes could ever hold the group: a replica is 2 pods on 2 different nodes, each asking for "
        "4 nvidia.com/gpu of product NVIDIA-L4; 1 node could hold one, and the cluster has 2 nodes with "
        "4 x NVIDIA-L4; 1 node with 4 x NVIDIA-L4 has the taint dedicated=infer:NoSchedule, which the pods do "
        "not tolerate."
    )

"""Where the serving pods can run: pods the scheduler cannot place (wait, or no node could
ever hold them), and replicas on several nodes (LeaderWorkerSet groups)."""

from __future__ import annotations

from dataclasses import replace

from decideobjects import (
    H100,
    KNOWN,
    LLAMA_70B,
    MULTI,
    NOW,
    UNKNOWN,
    cond,
    group_pod,
    kinds,
    live_deployment,
    live_lws,
    live_service,
    multi,
    observed,
    serving_pod,
    unschedulable_pod,
)

from llm_common.modelfacts import ModelFacts
from llm_operator.decide.decision import Lookups, decide
from llm_operator.decide.observed import Refusal
from llm_operator.facts import answers


def test_pods_waiting_for_gpus_a_node_could_offer_are_reconciling():
    live = live_deployment({"replicas": 3}, ready=2, replicas=3)
    pods = [serving_pod(live, name="m-1"), serving_pod(live, name="m-2"), unschedulable_pod("m-3")]
    d = decide(observed(spec={"replicas": 3}, children=[live_service(), live], pods=pods), KNOWN, NOW)
    assert d.phase == "Unschedulable"
    assert cond(d)[:2] == ("False", "WaitingForGPUs")
    assert cond(d)[2].startswith("2 of 3 replicas serve; 1 wait for GPUs that no node has free now")
    assert cond(d, "Reconciling")[:2] == ("True", "WaitingForGPUs") and cond(d, "Stalled")[0] == "False"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "WaitingForGPUs")]


def test_a_pod_no_node_could_ever_hold_is_stalled_naming_what_is_asked_and_what_exists():
    l4 = {
        "metadata": {"name": "l4-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-L4"}},
        "status": {"allocatable": {"nvidia.com/gpu": "4"}},
    }
    cpu = {"metadata": {"name": "cpu-1", "labels": {}}, "status": {"allocatable": {}}}
    big = {"gpus": 16}
    d = decide(
        replace(
            observed(spec=big, children=[live_service(big), live_deployment(big, ready=0)], pods=[unschedulable_pod()]),
            nodes=(H100, l4, cpu),
        ),
        UNKNOWN,
        NOW,
    )
    assert d.phase == "Failed" and cond(d)[:2] == ("False", "NoNodeFits")
    assert cond(d)[2] == (
        "1 of 1 replicas cannot be scheduled, and no node could ever hold one: each pod asks for "
        "16 nvidia.com/gpu; the cluster has 1 node with 4 x NVIDIA-L4, 1 node with "
        "8 x NVIDIA-H100-80GB-HBM3, 1 node with no nvidia.com/gpu. The scheduler says: "
        "0/5 nodes are available: 5 Insufficient nvidia.com/gpu."
    )
    assert cond(d, "Stalled")[:2] == ("True", "NoNodeFits") and cond(d, "Reconciling")[0] == "False"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "NoNodeFits")]


def test_a_gpu_product_no_node_has_is_stalled():
    spec = {"gpu": {"product": "NVIDIA-A100-SXM4-80GB"}}
    d = decide(
        observed(spec=spec, children=[live_service(spec), live_deployment(spec, ready=0)], pods=[unschedulable_pod()]),
        KNOWN,
        NOW,
    )
    assert cond(d)[1] == "NoNodeFits" and "asks for 1 nvidia.com/gpu of product NVIDIA-A100-SXM4-80GB" in cond(d)[2]


def test_a_node_selector_no_node_matches_is_stalled_one_that_matches_waits():
    spec = {"scheduling": {"nodeSelector": {"pool": "inference"}}}
    args = dict(spec=spec, children=[live_service(spec), live_deployment(spec, ready=0)], pods=[unschedulable_pod()])
    d = decide(observed(**args), KNOWN, NOW)
    assert cond(d)[1] == "NoNodeFits"
    assert (
        "on a node labelled pool=inference; the cluster has 1 node with 8 x NVIDIA-H100-80GB-HBM3; "
        "1 node with 8 x NVIDIA-H100-80GB-HBM3 lacks the label pool=inference of spec.scheduling.nodeSelector."
    ) in cond(d)[2]
    pooled = {**H100, "metadata": {**H100["metadata"], "labels": {**H100["metadata"]["labels"], "pool": "inference"}}}
    assert cond(decide(replace(observed(**args), nodes=(pooled,)), KNOWN, NOW))[1] == "WaitingForGPUs"


def tainted_h100(*taints):
    return {
        **H100,
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}, *taints]},
    }


def test_a_taint_the_pods_do_not_tolerate_is_stalled_naming_it_and_a_toleration_makes_it_wait():
    dedicated = {"key": "dedicated", "value": "infer", "effect": "NoSchedule"}

    def judged(spec):
        args = dict(
            spec=spec, children=[live_service(spec), live_deployment(spec, ready=0)], pods=[unschedulable_pod()]
        )
        return decide(replace(observed(**args), nodes=(tainted_h100(dedicated),)), KNOWN, NOW)

    d = judged({})
    assert cond(d)[:2] == ("False", "NoNodeFits") and cond(d, "Stalled")[:2] == ("True", "NoNodeFits")
    assert (
        "the cluster has 1 node with 8 x NVIDIA-H100-80GB-HBM3; 1 node with 8 x NVIDIA-H100-80GB-HBM3 has the "
        "taint dedicated=infer:NoSchedule, which the pods do not tolerate."
    ) in cond(d)[2]
    tolerated = {"scheduling": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infer"}]}}
    assert cond(judged(tolerated))[:2] == ("False", "WaitingForGPUs")


def test_a_cordoned_node_is_waited_for_not_stalled_on():
    cordoned = tainted_h100({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
    args = dict(spec={}, children=[live_service(), live_deployment(ready=0)], pods=[unschedulable_pod()])
    d = decide(replace(observed(**args), nodes=(cordoned,)), KNOWN, NOW)
    assert cond(d)[1] == "WaitingForGPUs" and cond(d, "Stalled")[0] == "False"


def test_a_required_node_affinity_no_node_matches_is_stalled_naming_the_requirement():
    zone = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-west-1a"]}
    spec = {
        "gpu": {"product": "NVIDIA-H100-80GB-HBM3"},
        "scheduling": {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [zone]}]
                    }
                }
            }
        },
    }
    args = dict(spec=spec, children=[live_service(spec), live_deployment(spec, ready=0)], pods=[unschedulable_pod()])
    d = decide(observed(**args), KNOWN, NOW)
    assert cond(d)[1] == "NoNodeFits"
    assert (
        cond(d)[2]
        .split(" The scheduler says:")[0]
        .endswith(
            "1 node with 8 x NVIDIA-H100-80GB-HBM3 does not match the required node affinity "
            "(spec.scheduling.affinity): topology.kubernetes.io/zone In (eu-west-1a)."
        )
    )
    labels = {**H100["metadata"]["labels"], "topology.kubernetes.io/zone": "eu-west-1a"}
    in_zone = {**H100, "metadata": {**H100["metadata"], "labels": labels}}
    assert cond(decide(replace(observed(**args), nodes=(in_zone,)), KNOWN, NOW))[1] == "WaitingForGPUs"


def test_a_replica_on_two_nodes_becomes_a_leaderworkerset_and_says_so():
    d = decide(multi(), UNKNOWN, NOW)
    assert kinds(d.apply) == [("Service", "m"), ("LeaderWorkerSet", "m")]
    assert cond(d)[:2] == ("False", "DeploymentMissing") and "LeaderWorkerSet does not exist yet" in cond(d)[2]
    assert d.status["nodes"] == 2 and d.status["gpus"] == 8
    assert d.status["selector"] == "llm-operator.io/name=m,llm-operator.io/role=leader"


def test_an_operator_without_leaderworkersets_says_how_to_turn_them_on():
    d = decide(multi(multi_node=False), UNKNOWN, NOW)
    assert d.apply == () and d.phase == "Failed"
    status, reason, message = cond(d, "Stalled")
    assert (status, reason) == ("True", "MultiNodeOff")
    assert "kubectl apply --server-side -f https://github.com/kubernetes-sigs/lws/releases/download/" in message
    assert "lws.enabled=true" in message and "spec.nodes: 1" in message


def test_too_few_nodes_for_a_group_is_stalled_before_anything_is_made():
    d = decide(multi(nodes=(H100,)), UNKNOWN, NOW)
    assert d.apply == () and cond(d, "Stalled")[:2] == ("True", "NoNodeFits")
    assert cond(d)[2].startswith(
        "Cannot run a replica on 2 nodes: too few nodes could ever hold the group: a replica "
        "is 2 pods on 2 different nodes, each asking for 8 nvidia.com/gpu; 1 node could "
        "hold one"
    )


def test_a_group_is_ready_when_every_pod_of_it_is():
    lws = live_lws()
    both = [group_pod(lws, 0, 0), group_pod(lws, 0, 1)]
    d = decide(multi(children=[live_service(MULTI, nodes=2), lws], pods=both), UNKNOWN, NOW)
    assert d.phase == "Ready" and d.apply == ()
    assert cond(d)[2].startswith("1/1 replicas (each a group of 2 pods on 2 nodes) are ready and serving at")

    waiting = [group_pod(lws, 0, 0), group_pod(lws, 0, 1, ready=False)]
    d = decide(multi(children=[live_service(MULTI, nodes=2), lws], pods=waiting), UNKNOWN, NOW)
    assert d.phase == "Progressing" and cond(d)[1] == "PodsNotReady"
    assert cond(d)[2] == (
        "0/1 replicas (each a group of 2 pods on 2 nodes) are ready; waiting for the model to load "
        "and answer /health. Not ready yet: pod m-0-1 (a worker of group 0)."
    )


def test_a_second_group_that_waits_for_gpus_names_its_pod_and_the_schedulers_message():
    lws = live_lws({"replicas": 2}, ready=1, replicas=2)
    pods = [group_pod(lws, 0, 0), group_pod(lws, 0, 1), group_pod(lws, 1, 0, ready=False, scheduled=False)]
    d = decide(multi({"replicas": 2}, children=[live_service(MULTI, nodes=2), lws], pods=pods), UNKNOWN, NOW)
    assert d.phase == "Unschedulable" and cond(d, "Stalled")[0] == "False"
    assert cond(d)[2] == (
        "1 of 2 replicas (each a group of 2 pods on 2 nodes) serve; pod m-1 (the leader of group 1) "
        "waits for GPUs that no node has free now (nodes could hold the group once GPUs free up or "
        "nodes are added). The scheduler says: 0/5 nodes are available: 2 Insufficient nvidia.com/gpu."
    )


def test_a_cluster_without_the_leaderworkerset_api_is_stalled_with_the_install_line():
    refused = {("LeaderWorkerSet", "m"): Refusal(404, "the server could not find the requested resource")}
    d = decide(replace(multi(children=[live_service(MULTI, nodes=2)]), refused=refused), UNKNOWN, NOW)
    status, reason, message = cond(d, "Stalled")
    assert (status, reason) == ("True", "LeaderWorkerSetMissing")
    assert message.startswith(
        "LeaderWorkerSet/m cannot be made: this cluster has no LeaderWorkerSet API "
        "(leaderworkerset.x-k8s.io/v1; HTTP 404: the server could not find the requested resource)."
    )


def test_moving_from_one_node_to_two_replaces_the_deployment_with_a_leaderworkerset():
    one = {**MULTI, "nodes": 1}
    d = decide(multi(children=[live_service(one), live_deployment(one)]), UNKNOWN, NOW)
    assert ("LeaderWorkerSet", "m") in kinds(d.apply) and kinds(d.prune) == [("Deployment", "m")]


def test_the_autoscaler_reads_the_leaders_of_groups_only(monkeypatch):
    """Workers run headless (no HTTP): the load of a group is its leader's /metrics."""
    from types import SimpleNamespace

    from llm_operator.autoscale import loop as scaling
    from llm_operator.autoscale import policy as autoscaler

    lws = live_lws({"replicas": 2}, ready=2, replicas=2)
    pods = [group_pod(lws, g, w) for g in (0, 1) for w in (0, 1)]
    scraped = []

    def scrape(pod, metric, url, engine):
        scraped.append(pod["metadata"]["name"])
        return autoscaler.PodSample(pod["metadata"]["name"], 1.0)

    monkeypatch.setattr(scaling, "scrape", scrape)
    spec = {"replicas": 2, "autoscaling": {"mode": "operator", "minReplicas": 2, "maxReplicas": 2}}
    tick = scaling.tick(
        multi(spec, children=[lws], pods=pods), SimpleNamespace(pod_metrics_url="http://x/{pod}"), None, now=1000.0
    )
    assert sorted(scraped) == ["m-0", "m-1"]  # not m-0-1, m-1-1
    assert tick.scale_to is None and tick.report["lastDecision"]["desiredReplicas"] == 2


def test_the_lws_install_line_names_the_version_the_local_plane_runs():
    from pathlib import Path

    from llm_operator.decide.placement import LWS_INSTALL

    pinned = dict(
        line.split("=", 1)
        for line in (Path(__file__).parents[3] / "hack" / "versions.env").read_text().split()
        if "=" in line and not line.startswith("#")
    )["LWS_VERSION"]
    assert f"/download/{pinned}/manifests.yaml" in LWS_INSTALL
    for doc in ("README.md", "docs/install.md", "docs/multi-node.md", "charts/llm-operator/values.yaml"):
        assert LWS_INSTALL in (Path(__file__).parents[3] / doc).read_text(), doc


def l4_node(name, *taints):
    labels = {"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.memory": "23034"}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}, *taints]},
        "status": {"allocatable": {"nvidia.com/gpu": "4"}},
    }


def test_a_model_that_does_not_fit_names_only_what_the_nodes_the_pods_may_use_can_carry_out():
    """70B at 16 bits on one L4, on a cluster of L4 nodes with 4 GPUs each: not "use 8 GPUs"."""
    big = Lookups(facts=answers.FactsAnswer(ModelFacts.from_dict(LLAMA_70B), answers.HUB))
    spec = {"model": {"id": "org/llama-70b"}, "gpus": 1, "gpu": {"product": "NVIDIA-L4"}}
    on_l4 = replace(observed(spec=spec), nodes=(l4_node("l4-0"), l4_node("l4-1")))
    reason, message = cond(decide(on_l4, big, NOW))[1:]
    assert reason == "DoesNotFit"
    assert message.startswith("llama-70b at 16-bit needs 131.4 GiB of weights; 1 x L4 24GB gives 22.5 GiB: ")
    assert (
        ": use an 8-bit quantization (fp8 or eetq) on 4 GPUs (spec.gpus: 4) "
        "(the nodes the pods may use: 2 with 4 x NVIDIA-L4)."
    ) in message
    assert "8 GPUs" not in message
    # With LeaderWorkerSets on, vLLM across both nodes; an H100 node the pods may not use is not named.
    dedicated = {"key": "dedicated", "value": "train", "effect": "NoSchedule"}
    tainted_h100 = {**H100, "spec": {"taints": [dedicated]}}
    message = cond(decide(replace(on_l4, multi_node=True, nodes=(*on_l4.nodes, tainted_h100)), big, NOW))[2]
    assert "use engine vllm on 2 nodes of 4 GPUs (spec.engine.name: vllm, spec.nodes: 2, spec.gpus: 4) or " in message
    assert "H100" not in message

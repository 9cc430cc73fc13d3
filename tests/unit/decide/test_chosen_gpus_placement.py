"""The GPU count the planner picks for a spec without gpus, judged on the nodes the pods may
use: a count no node offers is DoesNotFit, with what the nodes can carry out, before anything
is made; not a Deployment whose pods then read NoNodeFits."""

from __future__ import annotations

from dataclasses import replace

from decideobjects import LLAMA_70B, NOW, cond, kinds, live_deployment, live_service, observed, unschedulable_pod

from llm_common.modelfacts import ModelFacts
from llm_operator.decide.decision import Lookups, decide
from llm_operator.facts import answers

BIG = Lookups(facts=answers.FactsAnswer(ModelFacts.from_dict(LLAMA_70B), answers.HUB))
ON_L4 = {"model": {"id": "org/llama-70b"}, "gpus": None, "gpu": {"product": "NVIDIA-L4"}}


def l4_node(name, gpus):
    labels = {"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.memory": "23034"}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}},
    }


def on_nodes(*nodes, multi_node=False):
    """70B at 16 bits, gpus unset, GPU product L4: a live Deployment whose pod cannot be placed."""
    children = [live_service(ON_L4), live_deployment(ON_L4, ready=0)]
    return replace(
        observed(spec=ON_L4, children=children, pods=[unschedulable_pod()]), nodes=nodes, multi_node=multi_node
    )


def test_eight_gpus_on_nodes_of_four_l4_read_does_not_fit_with_the_remedy_not_no_node_fits():
    d = decide(on_nodes(l4_node("l4-0", 4), l4_node("l4-1", 4)), BIG, NOW)
    assert cond(d) == (
        "False",
        "DoesNotFit",
        "llama-70b at 16-bit needs at least 8 x L4 24GB (18.2 GiB per GPU: 16.4 weights, 0.2 KV cache, 1.6 runtime); "
        "that would need a node with 8 GPUs, and the largest L4 24GB node the pods may use has 4: use an 8-bit "
        "quantization (fp8 or eetq) on 4 GPUs (spec.gpus: 4) (the nodes the pods may use: 2 with 4 x NVIDIA-L4). "
        "Model facts from the Hugging Face Hub.",
    )
    assert cond(d, "Stalled")[:2] == ("True", "DoesNotFit")
    assert d.status["plan"]["numShard"] == 8 and d.status["plan"]["fits"] is False
    assert "Deployment" not in [kind for kind, _ in kinds(d.desired)]


def test_a_node_with_eight_l4_keeps_the_plan_and_the_pod_waits_for_gpus():
    d = decide(on_nodes(l4_node("l4-0", 4), l4_node("l4-8", 8)), BIG, NOW)
    assert d.status["plan"]["numShard"] == 8 and d.status["plan"]["fits"] is True
    assert cond(d)[:2] == ("False", "WaitingForGPUs")

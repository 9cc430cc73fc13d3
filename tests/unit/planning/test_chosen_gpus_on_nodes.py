"""The GPU count the planner picks (spec.gpus unset) must be one the nodes the pods may use
have: the fewest GPUs that fit, when no such node offers that many, is DoesNotFit with what the
nodes can carry out; vLLM with the node count left to the planner spreads over nodes that do.
Without a cluster (`plan`, `render`) the count is by memory alone, as before."""

from data_models import facts

from llm_operator.planning.admission import Cluster, NodeShape
from llm_operator.planning.gpus import gpu_type_for
from llm_operator.planning.planner import DOES_NOT_FIT, FITS, PlanRequest, plan

L4 = gpu_type_for("NVIDIA-L4", 23034)
H100 = gpu_type_for("NVIDIA-H100-80GB-HBM3", 81559)
FOUR_L4 = NodeShape(L4, "NVIDIA-L4", 4, 2)  # 2 nodes with 4 L4 each
EIGHT_H100 = NodeShape(H100, "NVIDIA-H100-80GB-HBM3", 8, 1)
ON_8_L4 = (
    "Meta-Llama-3-70B at 16-bit needs at least 8 x L4 24GB (18.2 GiB per GPU: 16.4 weights, 0.2 KV cache, "
    "1.6 runtime); that would need a node with 8 GPUs, and the largest L4 24GB node the pods may use has 4: "
)


def on_l4(cluster=None, engine="tgi", nodes=1):
    """A 70B model at 16 bits on L4 with spec.gpus unset: 8 L4 hold it."""
    return plan(PlanRequest(facts("llama-3-70b"), "none", "l4", engine=engine, nodes=nodes, cluster=cluster))


def test_without_a_cluster_the_planner_picks_8_gpus_by_memory_alone():
    chosen = on_l4()
    assert (chosen.status, chosen.num_shard, chosen.nodes, chosen.min_gpus) == (FITS, 8, 1, 8)
    assert chosen.reason == (
        "Meta-Llama-3-70B at 16-bit needs 18.2 GiB per GPU (16.4 weights, 0.2 KV cache, 1.6 runtime); "
        "8 x L4 24GB gives 22.5 GiB each: fits with 4.3 GiB to spare."
    )


def test_on_nodes_of_4_l4_8_gpus_do_not_fit_and_the_remedy_is_a_smaller_format_on_4():
    chosen = on_l4(Cluster((FOUR_L4,), "NVIDIA-L4"))
    assert (chosen.status, chosen.fits, chosen.num_shard, chosen.min_gpus) == (DOES_NOT_FIT, False, 8, 8)
    assert chosen.reason == ON_8_L4 + (
        "use an 8-bit quantization (fp8 or eetq) on 4 GPUs (spec.gpus: 4) "
        "(the nodes the pods may use: 2 with 4 x NVIDIA-L4)."
    )


def test_with_leaderworkersets_tgi_is_offered_vllm_across_two_nodes_of_4():
    assert on_l4(Cluster((FOUR_L4,), "NVIDIA-L4", multi_node=True)).reason == ON_8_L4 + (
        "use engine vllm on 2 nodes of 4 GPUs (spec.engine.name: vllm, spec.nodes: 2, spec.gpus: 4) or "
        "an 8-bit quantization (fp8 or eetq) on 4 GPUs (spec.gpus: 4) (the nodes the pods may use: 2 with 4 x NVIDIA-L4)."
    )


def test_another_gpu_product_the_cluster_has_is_named():
    assert on_l4(Cluster((EIGHT_H100, FOUR_L4), "NVIDIA-L4")).reason == ON_8_L4 + (
        "use an 8-bit quantization (fp8 or eetq) on 4 GPUs (spec.gpus: 4) or "
        "2 x H100 80GB (spec.gpu.product: NVIDIA-H100-80GB-HBM3, spec.gpus: 2) "
        "(the nodes the pods may use: 1 with 8 x NVIDIA-H100-80GB-HBM3, 2 with 4 x NVIDIA-L4)."
    )


def test_a_node_with_8_l4_fits_on_8_as_without_a_cluster():
    eight_l4 = Cluster((NodeShape(L4, "NVIDIA-L4", 8, 1), FOUR_L4), "NVIDIA-L4")
    assert on_l4(eight_l4) == on_l4()


def test_vllm_left_to_pick_the_nodes_spreads_over_two_nodes_of_4_with_leaderworkersets():
    spread = on_l4(Cluster((FOUR_L4,), "NVIDIA-L4", multi_node=True), engine="vllm", nodes=None)
    assert (spread.status, spread.num_shard, spread.nodes, spread.min_gpus) == (FITS, 4, 2, 4)
    # Without LeaderWorkerSets a replica stays on one node: 8 GPUs no node has.
    alone = on_l4(Cluster((FOUR_L4,), "NVIDIA-L4"), engine="vllm", nodes=None)
    assert (alone.status, alone.num_shard, alone.nodes) == (DOES_NOT_FIT, 8, 1)
    assert "that would need a node with 8 GPUs, and the largest L4 24GB node the pods may use has 4: " in alone.reason
    assert alone.reason.endswith(
        "use an 8-bit quantization (fp8) on 4 GPUs (spec.gpus: 4) (the nodes the pods may use: 2 with 4 x NVIDIA-L4)."
    )


def test_vllm_on_nodes_the_planner_picked_that_too_few_nodes_offer_names_a_layout_on_fewer():
    """405B at 16 bits needs 2 nodes of 8 H100; the cluster has one: fp8 on that one."""
    chosen = plan(
        PlanRequest(
            facts("llama-3.1-405b"),
            "none",
            "h100-80gb",
            engine="vllm",
            nodes=None,
            cluster=Cluster((EIGHT_H100,), multi_node=True),
        )
    )
    assert (chosen.status, chosen.num_shard, chosen.nodes) == (DOES_NOT_FIT, 8, 2)
    assert chosen.reason == (
        "Llama-3.1-405B at 16-bit needs at least 8 x H100 80GB on each of 2 nodes (49.9 GiB per GPU: 47.2 weights, "
        "0.1 KV cache, 2.6 runtime); that would need 2 nodes with 8 GPUs each, and only 1 H100 80GB node the pods "
        "may use has that many: use an 8-bit quantization (fp8) on 8 GPUs (spec.gpus: 8) "
        "(the nodes the pods may use: 1 with 8 x NVIDIA-H100-80GB-HBM3)."
    )


def test_fewer_tokens_are_judged_at_the_most_gpus_a_node_has():
    """An 8B model at 131072 tokens on vLLM needs 2 L4 for its KV cache; nodes of 1 L4 hold
    fewer tokens on one GPU."""
    chosen = plan(
        PlanRequest(
            facts("llama-3-8b"),
            "none",
            "l4",
            engine="vllm",
            max_total_tokens=131072,
            cluster=Cluster((NodeShape(L4, "NVIDIA-L4", 1, 3),), "NVIDIA-L4"),
        )
    )
    assert (chosen.status, chosen.num_shard) == (DOES_NOT_FIT, 2)
    assert chosen.reason.endswith(
        "that would need a node with 2 GPUs, and the largest L4 24GB node the pods may use has 1: "
        "use at most 35229 max total tokens (the nodes the pods may use: 3 with 1 x NVIDIA-L4)."
    )


def test_a_gpu_no_node_has_is_left_to_the_pods_verdict():
    """No L4 node at all: the pods read NoNodeFits naming what the cluster has, as before."""
    assert on_l4(Cluster((EIGHT_H100,), "NVIDIA-L4")) == on_l4()

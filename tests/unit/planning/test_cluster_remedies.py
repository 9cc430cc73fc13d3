"""A plan that does not fit, judged on the nodes the pods may use: the remedies are what those
nodes can carry out, or the sentence says nothing in the cluster can hold the model. Without a
cluster (`plan`, `render`), the remedies are by memory alone, as before."""

from data_models import facts

from llm_operator.planning.admission import Cluster, NodeShape, PodRules, node_shapes
from llm_operator.planning.gpus import gpu_type_for
from llm_operator.planning.planner import PlanRequest, plan

L4 = gpu_type_for("NVIDIA-L4", 23034)
H100 = gpu_type_for("NVIDIA-H100-80GB-HBM3", 81559)
FOUR_L4 = NodeShape(L4, "NVIDIA-L4", 4, 2)  # the demo's L4 nodes: 2 of them, 4 GPUs each
EIGHT_H100 = NodeShape(H100, "NVIDIA-H100-80GB-HBM3", 8, 2)
ON_ONE_L4 = "Meta-Llama-3-70B at 16-bit needs 131.4 GiB of weights; 1 x L4 24GB gives 22.5 GiB: "


def on_one_l4(cluster=None, engine="tgi"):
    """The demo's llama-70b-on-one-l4: a 70B model at 16 bits, gpus 1, gpu.product NVIDIA-L4."""
    return plan(PlanRequest(facts("llama-3-70b"), "none", "l4", gpus=1, engine=engine, cluster=cluster)).reason


def test_without_a_cluster_the_remedy_is_by_memory_alone():
    assert on_one_l4() == ON_ONE_L4 + "use 8 GPUs."


def test_on_nodes_of_4_l4_the_remedy_is_a_smaller_format_on_4_gpus_not_8_gpus():
    assert on_one_l4(Cluster((FOUR_L4,), "NVIDIA-L4")) == ON_ONE_L4 + (
        "use an 8-bit quantization (fp8 or eetq) on 4 GPUs (spec.gpus: 4) "
        "(the nodes the pods may use: 2 with 4 x NVIDIA-L4)."
    )


def test_with_leaderworkersets_vllm_across_two_nodes_of_4_l4_is_offered_too():
    assert on_one_l4(Cluster((FOUR_L4,), "NVIDIA-L4", multi_node=True)) == ON_ONE_L4 + (
        "use engine vllm on 2 nodes of 4 GPUs (spec.engine.name: vllm, spec.nodes: 2, spec.gpus: 4) or "
        "an 8-bit quantization (fp8 or eetq) on 4 GPUs (spec.gpus: 4) (the nodes the pods may use: 2 with 4 x NVIDIA-L4)."
    )


def test_an_h100_node_of_the_cluster_is_named_with_the_product_to_ask_for():
    assert on_one_l4(Cluster((EIGHT_H100, FOUR_L4), "NVIDIA-L4")) == ON_ONE_L4 + (
        "use an 8-bit quantization (fp8 or eetq) on 4 GPUs (spec.gpus: 4) or "
        "2 x H100 80GB (spec.gpu.product: NVIDIA-H100-80GB-HBM3, spec.gpus: 2) "
        "(the nodes the pods may use: 2 with 8 x NVIDIA-H100-80GB-HBM3, 2 with 4 x NVIDIA-L4)."
    )


def test_more_gpus_are_named_where_a_node_has_that_many():
    eight_l4 = NodeShape(L4, "NVIDIA-L4", 8, 1)
    assert on_one_l4(Cluster((eight_l4,), "NVIDIA-L4")) == ON_ONE_L4 + (
        "use 8 GPUs or an 8-bit quantization (fp8 or eetq) on 4 GPUs (spec.gpus: 4) "
        "(the nodes the pods may use: 1 with 8 x NVIDIA-L4)."
    )


def test_when_only_several_changes_together_fit_they_are_named_together():
    three_single = NodeShape(L4, "NVIDIA-L4", 1, 3)
    assert on_one_l4(Cluster((three_single,), "NVIDIA-L4", multi_node=True)) == ON_ONE_L4 + (
        "use a 4-bit quantization (awq or gptq) with engine vllm on 3 nodes of 1 x L4 24GB "
        "(spec.engine.name: vllm, spec.nodes: 3, spec.gpus: 1) (the nodes the pods may use: 3 with 1 x NVIDIA-L4)."
    )


def test_when_nothing_in_the_cluster_can_hold_it_the_sentence_says_so():
    two_single = NodeShape(L4, "NVIDIA-L4", 1, 2)
    assert on_one_l4(Cluster((two_single,), "NVIDIA-L4")) == ON_ONE_L4 + (
        "nothing in this cluster can hold it (the nodes the pods may use: 2 with 1 x NVIDIA-L4): no GPU count, "
        "node count or smaller quantization fits; add nodes with more GPU memory, or serve a smaller model."
    )
    assert on_one_l4(Cluster((), "NVIDIA-L4")) == ON_ONE_L4 + (
        "nothing in this cluster can hold it: no node the pods may use (by spec.scheduling and the nodes' taints) "
        "has GPUs labelled with a product the operator knows, or with their memory (nvidia.com/gpu.memory); add "
        "such nodes, or let the pods use them."
    )


def test_vllm_states_the_startup_refusal_and_then_what_the_nodes_can_carry_out():
    reason = plan(
        PlanRequest(
            facts("llama-3-8b"),
            "none",
            "l4",
            gpus=1,
            engine="vllm",
            max_total_tokens=131072,
            cluster=Cluster((FOUR_L4,), "NVIDIA-L4"),
        )
    ).reason
    assert ", so vLLM would refuse to start: one sequence of 131072 tokens needs" in reason
    assert reason.endswith("(the nodes the pods may use: 2 with 4 x NVIDIA-L4).")
    # More GPUs hold it in its own format: a smaller format on as many is no remedy of its own.
    assert reason.endswith(
        "Use 2 GPUs or at most 35229 max total tokens (the nodes the pods may use: 2 with 4 x NVIDIA-L4)."
    )


def node(name, product, memory, gpus, taints=()):
    labels = {"nvidia.com/gpu.product": product, **({"nvidia.com/gpu.memory": memory} if memory is not None else {})}
    return {
        "metadata": {"name": name, "labels": labels},
        **({"spec": {"taints": list(taints)}} if taints else {}),
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}},
    }


def test_the_node_shapes_are_the_nodes_the_pods_may_use_largest_gpu_first():
    nodes = [
        node("l4-0", "NVIDIA-L4", "23034", 4),
        node("l4-1", "NVIDIA-L4", "23034", 4),
        node("h100-0", "NVIDIA-H100-80GB-HBM3", "81559", 8),
        node("h100-1", "NVIDIA-H100-80GB-HBM3", "81559", 8, [{"key": "team", "value": "a", "effect": "NoSchedule"}]),
        node("odd", "Some-New-GPU", None, 2),  # no memory label, unknown product: cannot be planned
        node("bad", "NVIDIA-L4", "", 2),  # a memory label with no number
        {"metadata": {"name": "cpu-0", "labels": {}}, "status": {"allocatable": {}}},
    ]
    rules = PodRules(tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    assert node_shapes(nodes, "nvidia.com/gpu", rules) == (NodeShape(H100, "NVIDIA-H100-80GB-HBM3", 8, 1), FOUR_L4)

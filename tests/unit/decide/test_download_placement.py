"""Where the download Job's pod may run: the serving pods' scheduling (less their GPU labels on a
shared volume) or spec.cache.scheduling; and what a change of it does to a Job running or done."""

from __future__ import annotations

from decideobjects import CACHE, FAST, KNOWN, NOW, OWNER, claim, cond, job, kinds, live_service, observed, served

from llm_operator import api
from llm_operator.decide import manifests as resources
from llm_operator.decide.decision import decide

GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
STORAGE_TAINT = {"key": "storage", "operator": "Equal", "value": "local", "effect": "NoSchedule"}
ZONE_A = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
L4 = {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-L4"]}
BIG_GPU = {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["40000"]}
SPREAD = {
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 100,
                "podAffinityTerm": {
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "m"}},
                },
            }
        ]
    }
}


def spec(**kw) -> api.LLMDeploymentSpec:
    kw.setdefault("model", {"id": "org/model"})
    kw.setdefault("cache", {"enabled": True})
    return api.parse_spec(kw)


def pod(s: api.LLMDeploymentSpec) -> dict:
    return resources.desired_download_job(OWNER, s)["spec"]["template"]["spec"]


def placement(p: dict) -> dict:
    return {k: p[k] for k in ("nodeSelector", "tolerations", "affinity", "priorityClassName") if k in p}


def required(*terms: dict) -> dict:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


SCHEDULING = {
    "nodeSelector": {"pool": "llm", "nvidia.com/gpu.memory": "23034"},
    "tolerations": [STORAGE_TAINT],
    "affinity": {**required({"matchExpressions": [ZONE_A, BIG_GPU]}), **SPREAD},
    "priorityClassName": "serving",
}


def test_before_any_scheduling_the_download_tolerates_the_gpu_taint_and_nothing_more():
    assert placement(pod(spec())) == {"tolerations": [GPU_TAINT]}


def test_on_a_shared_volume_the_download_runs_where_the_serving_pods_may_less_their_gpu_labels():
    s = spec(gpu={"product": "NVIDIA-L4"}, scheduling=SCHEDULING)
    assert placement(pod(s)) == {
        "nodeSelector": {"pool": "llm"},
        "tolerations": [GPU_TAINT, STORAGE_TAINT],
        "affinity": required({"matchExpressions": [ZONE_A]}),
        "priorityClassName": "serving",
    }
    # The serving pods keep all of it.
    serving = resources.desired_deployment(OWNER, s, resources.Decisions(gpus=1))["spec"]["template"]["spec"]
    assert placement(serving) == {
        "nodeSelector": {"pool": "llm", "nvidia.com/gpu.memory": "23034"},
        "tolerations": [GPU_TAINT, STORAGE_TAINT],
        "affinity": {**required({"matchExpressions": [ZONE_A, BIG_GPU, L4]}), **SPREAD},
        "priorityClassName": "serving",
    }


def test_on_a_volume_of_one_node_the_download_keeps_the_gpu_product_so_serving_pods_can_follow_it():
    for mode in ("ReadWriteOnce", "ReadWriteOncePod"):
        s = spec(gpu={"product": "NVIDIA-L4"}, scheduling=SCHEDULING, cache={"enabled": True, "accessMode": mode})
        assert placement(pod(s)) == {
            "nodeSelector": {"pool": "llm", "nvidia.com/gpu.memory": "23034"},
            "tolerations": [GPU_TAINT, STORAGE_TAINT],
            "affinity": required({"matchExpressions": [ZONE_A, BIG_GPU, L4]}),
            "priorityClassName": "serving",
        }, mode


def test_an_alternative_about_gpus_only_lets_the_download_run_on_any_node():
    s = spec(
        gpu={"product": "NVIDIA-L4"},
        scheduling={
            "affinity": {
                "nodeAffinity": {
                    **required({"matchExpressions": [ZONE_A]}, {"matchExpressions": [BIG_GPU]})["nodeAffinity"],
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 10, "preference": {"matchExpressions": [BIG_GPU]}},
                        {"weight": 5, "preference": {"matchExpressions": [ZONE_A, BIG_GPU]}},
                    ],
                }
            }
        },
    )
    # Zone a or a big GPU: with the GPU left out, any node. The preference for a big GPU goes too.
    assert placement(pod(s)) == {
        "tolerations": [GPU_TAINT],
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 5, "preference": {"matchExpressions": [ZONE_A]}}
                ]
            }
        },
    }
    # gpu.product alone: no affinity at all (an empty term would match no node).
    assert placement(pod(spec(gpu={"product": "NVIDIA-L4"}))) == {"tolerations": [GPU_TAINT]}
    # Another vendor's GPUs: labels in its domain are GPU labels; NVIDIA's product label still is.
    amd = spec(gpu={"resource": "amd.com/gpu"}, scheduling={"nodeSelector": {"amd.com/gpu.family": "AI", "pool": "x"}})
    assert placement(pod(amd))["nodeSelector"] == {"pool": "x"}


def test_cache_scheduling_is_taken_as_written_and_the_serving_pods_keep_theirs():
    own = {
        "nodeSelector": {"storage": "local"},
        "tolerations": [STORAGE_TAINT],
        "affinity": required({"matchExpressions": [ZONE_A]}),
        "priorityClassName": "batch",
    }
    s = spec(gpu={"product": "NVIDIA-L4"}, scheduling=SCHEDULING, cache={"enabled": True, "scheduling": own})
    assert placement(pod(s)) == own
    # Set but empty: anywhere, with no toleration at all (not even the GPU taint's).
    assert placement(pod(spec(scheduling=SCHEDULING, cache={"enabled": True, "scheduling": {}}))) == {}
    serving = resources.desired_deployment(OWNER, s, resources.Decisions(gpus=1))["spec"]["template"]["spec"]
    assert serving["nodeSelector"] == SCHEDULING["nodeSelector"] and serving["priorityClassName"] == "serving"


def test_a_change_of_where_the_download_runs_is_a_change_of_its_pod_template():
    before = resources.desired_download_job(OWNER, spec())
    after = resources.desired_download_job(OWNER, spec(scheduling={"tolerations": [STORAGE_TAINT]}))
    key = resources.TEMPLATE_HASH_ANNOTATION
    assert before["metadata"]["name"] == after["metadata"]["name"]
    assert before["metadata"]["annotations"][key] != after["metadata"]["annotations"][key]
    # What only the serving pods use is no change to the download.
    product = resources.desired_download_job(OWNER, spec(gpu={"product": "NVIDIA-L4"}))
    assert product["metadata"]["annotations"][key] == before["metadata"]["annotations"][key]


MOVED = {**CACHE, "scheduling": {"nodeSelector": {"pool": "b"}, "tolerations": [STORAGE_TAINT]}}


def test_a_finished_download_is_not_repeated_when_the_scheduling_changes():
    children, pods = served(CACHE)
    d = decide(
        observed(spec=MOVED, storage_classes=FAST, children=children, pods=pods, meta={"generation": 2}), KNOWN, NOW
    )
    # The serving pods move; the Job that is done stays as it is, and nothing waits for it.
    assert kinds(d.apply) == [("Deployment", "m")] and d.prune == ()
    assert d.apply[0]["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "b"}
    assert cond(d, "WeightsCached")[:2] == ("True", "Cached") and d.blocked is None


def test_a_download_still_waiting_is_made_again_where_the_scheduling_now_says():
    d = decide(observed(spec=MOVED, storage_classes=FAST, children=[live_service(), claim(), job()]), KNOWN, NOW)
    name = job()["metadata"]["name"]
    assert d.prune == (
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": "ns"},
            "propagationPolicy": "Foreground",
        },
    )
    assert ("Job", name) not in kinds(d.apply)


def test_a_failed_download_waits_for_its_job_to_be_deleted_and_then_runs_where_the_scheduling_says():
    failed = decide(
        observed(spec=MOVED, storage_classes=FAST, children=[live_service(), claim(), job("Failed")]), KNOWN, NOW
    )
    assert failed.apply == () and failed.prune == () and cond(failed, "WeightsCached")[1] == "DownloadFailed"
    retried = decide(observed(spec=MOVED, storage_classes=FAST, children=[live_service(), claim()]), KNOWN, NOW)
    (again,) = [c for c in retried.apply if c["kind"] == "Job"]
    assert again["metadata"]["name"] == job()["metadata"]["name"]
    assert again["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "b"}

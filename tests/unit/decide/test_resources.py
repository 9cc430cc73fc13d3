"""Pure builders: spec -> desired children (issue 2)."""

from __future__ import annotations

import pytest

from llm_operator import api
from llm_operator.decide import manifests as resources
from llm_operator.decide.compare import is_subset, replace_ops, up_to_date

OWNER = resources.Owner(name="m", namespace="ns", uid="u-1")


def spec(**kw) -> api.LLMDeploymentSpec:
    kw.setdefault("model", {"id": "org/model"})
    return api.parse_spec(kw)


def container(d: dict) -> dict:
    return d["spec"]["template"]["spec"]["containers"][0]


def test_deployment_for_a_sharded_quantized_model():
    d = resources.desired_deployment(
        OWNER,
        spec(gpus=4, quantization="awq", limits={"maxInputTokens": 7168, "maxTotalTokens": 8192}),
        resources.Decisions(gpus=4),
    )
    c = container(d)
    assert c["image"] == "ghcr.io/huggingface/text-generation-inference:3.3.7"
    assert c["args"] == [
        "--model-id",
        "org/model",
        "--revision",
        "main",
        "--num-shard",
        "4",
        "--quantize",
        "awq",
        "--max-input-tokens",
        "7168",
        "--max-total-tokens",
        "8192",
        "--hostname",
        "0.0.0.0",
        "--port",
        "8080",
        "--json-output",
    ]
    assert c["resources"] == {"limits": {"nvidia.com/gpu": "4"}}
    assert {"name": "USAGE_STATS", "value": "off"} in c["env"]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    pod = d["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}} in pod["volumes"]
    assert pod["terminationGracePeriodSeconds"] == 120 > 90
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] == 3600
    assert d["spec"]["replicas"] == 1
    assert d["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "llm-operator.io/v1alpha1",
            "kind": "LLMDeployment",
            "name": "m",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert d["spec"]["selector"] == {"matchLabels": {"llm-operator.io/name": "m"}}
    assert "affinity" not in pod


def test_token_is_passed_by_reference_only():
    c = container(
        resources.desired_deployment(
            OWNER, spec(model={"id": "org/gated", "tokenSecretRef": {"name": "hf"}}), resources.Decisions(gpus=1)
        )
    )
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in c["env"]


def test_product_becomes_required_node_affinity_merged_with_the_users():
    user = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
            }
        }
    }
    d = resources.desired_deployment(
        OWNER,
        spec(gpu={"product": "NVIDIA-H100-80GB-HBM3"}, scheduling={"affinity": user}),
        resources.Decisions(gpus=1),
    )
    terms = d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a"]},
                {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]},
            ]
        }
    ]


def test_deployment_replicas_follow_the_llmdeployment_which_autoscalers_scale():
    d = resources.desired_deployment(
        OWNER,
        spec(replicas=3, autoscaling={"mode": "operator", "minReplicas": 2, "maxReplicas": 4}),
        resources.Decisions(gpus=1),
    )
    assert d["spec"]["replicas"] == 3


def test_hpa_scales_the_llmdeployment_on_a_tgi_pods_metric():
    hpa = resources.desired_hpa(
        OWNER,
        spec(
            autoscaling={"mode": "hpa", "minReplicas": 1, "maxReplicas": 5, "target": 4, "scaleDownDelaySeconds": 120}
        ),
    )
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "llm-operator.io/v1alpha1",
        "kind": "LLMDeployment",
        "name": "m",
    }
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {"metric": {"name": "tgi_queue_size"}, "target": {"type": "AverageValue", "averageValue": "4"}},
        }
    ]
    assert hpa["spec"]["behavior"]["scaleDown"] == {"stabilizationWindowSeconds": 120}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 5)
    assert resources.desired_hpa(OWNER, spec(autoscaling={"mode": "operator"})) is None


def test_hpa_on_the_gateway_is_an_external_metric_picking_this_model_averaged_per_replica():
    hpa = resources.desired_hpa(
        OWNER, spec(autoscaling={"mode": "hpa", "metric": "concurrency", "target": 6, "hpaSource": "gateway"})
    )
    assert hpa["spec"]["metrics"] == [
        {
            "type": "External",
            "external": {
                "metric": {
                    "name": "llm_gateway_requests_in_flight",
                    "selector": {"matchLabels": {"model_namespace": OWNER.namespace, "model_name": "m"}},
                },
                "target": {"type": "AverageValue", "averageValue": "6"},
            },
        }
    ]


@pytest.mark.parametrize(
    "autoscaling",
    [
        {"mode": "hpa", "metric": "queue", "hpaSource": "gateway"},
        {"mode": "operator", "metric": "concurrency", "hpaSource": "gateway"},
    ],
)
def test_hpa_source_gateway_needs_mode_hpa_and_metric_concurrency(autoscaling):
    with pytest.raises(ValueError, match="hpaSource gateway needs mode hpa and metric concurrency"):
        spec(autoscaling=autoscaling)


def test_children_and_pdb_only_with_several_replicas():
    kinds = lambda s: [c["kind"] for c in resources.desired_children(OWNER, s, resources.Decisions(gpus=1))]  # noqa: E731
    assert kinds(spec()) == ["Service", "Deployment"]
    assert kinds(spec(replicas=3)) == ["Service", "Deployment", "PodDisruptionBudget"]


def test_service_and_url():
    svc = resources.desired_service(OWNER, spec(service={"port": 8000}))
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["type"] == "ClusterIP"
    assert resources.service_url(OWNER, spec(service={"port": 8000})) == "http://m.ns.svc.cluster.local:8000"
    assert resources.service_url(OWNER, spec()) == "http://m.ns.svc.cluster.local"


def test_desired_hash_changes_with_the_spec_and_only_then():
    def h(s):
        return resources.desired_deployment(OWNER, s, resources.Decisions(gpus=1))["metadata"]["annotations"][
            resources.HASH_ANNOTATION
        ]

    assert h(spec()) == h(spec())
    assert h(spec()) != h(spec(replicas=2))


def test_pods_carry_the_revision_of_their_template_which_replicas_do_not_change():
    def rev(s):
        return resources.desired_deployment(OWNER, s, resources.Decisions(gpus=1))["spec"]["template"]["metadata"][
            "labels"
        ][resources.TEMPLATE_HASH_LABEL]

    assert rev(spec()) == rev(spec(replicas=3))
    assert rev(spec()) != rev(spec(model={"id": "org/other"})) and rev(spec()) != rev(spec(podAnnotations={"a": "b"}))
    assert len(rev(spec())) == 10


def test_subset_comparison_ignores_defaults_but_not_edits():
    want = {"spec": {"ports": [{"port": 80}], "type": "ClusterIP"}}
    assert is_subset(
        want, {"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "type": "ClusterIP", "clusterIP": "10.0.0.1"}}
    )
    assert not is_subset(want, {"spec": {"ports": [{"port": 9999}], "type": "ClusterIP"}})
    assert not is_subset(want, {"spec": {"ports": [{"port": 80}, {"port": 81}], "type": "ClusterIP"}})


def test_up_to_date_needs_the_same_hash_and_fields():
    svc = resources.desired_service(OWNER, spec())
    live = {**svc, "spec": {**svc["spec"], "clusterIP": "10.0.0.9"}}
    assert up_to_date(svc, live)
    assert not up_to_date(svc, None)
    edited = {**live, "spec": {**live["spec"], "type": "NodePort"}}
    assert not up_to_date(svc, edited)
    assert replace_ops(svc, edited) == [{"op": "replace", "path": "/spec/type", "value": "ClusterIP"}]


def test_download_job_names_are_unique_per_owner_and_fit_a_label():
    s = spec(model={"id": "mistralai/Mistral-7B-Instruct-v0.2"})
    long_a = "a-model-served-for-the-research-team-in-zone" + "-east"
    long_b = "a-model-served-for-the-research-team-in-zone" + "-west"
    assert long_a[:40] == long_b[:40]
    a = resources.download_job_name(resources.Owner(long_a, "ns", "u1"), s)
    b = resources.download_job_name(resources.Owner(long_b, "ns", "u2"), s)
    assert a != b
    assert a.startswith(long_a[:40] + "-download-") and len(a) <= 63
    # A short name keeps the name it always had: the model's hash alone.
    assert resources.download_job_name(resources.Owner("m", "ns", "u3"), s) == resources.download_job_name(
        resources.Owner("m", "other-ns", "u4"), s
    )


def test_the_launcher_runs_itself_so_arguments_are_never_split_or_globbed():
    # The image's entrypoint script passes $@ unquoted: an argument with a space or a * would break.
    d = resources.desired_deployment(
        OWNER, spec(engine={"args": ["--otlp-service-name", "my model *"]}), resources.Decisions(gpus=1)
    )
    c = container(d)
    assert c["command"] == ["text-generation-launcher"]
    assert c["args"][-2:] == ["--otlp-service-name", "my model *"]


# --- multi-node replicas: a LeaderWorkerSet group per replica (issue 14) -------------------------

MULTI = dict(
    model={"id": "meta-llama/Llama-3.1-405B-Instruct"},
    engine={"name": "vllm"},
    gpus=8,
    nodes=2,
    gpu={"product": "NVIDIA-H100-80GB-HBM3"},
    replicas=3,
)


def test_a_replica_on_two_nodes_is_a_leaderworkerset_group_of_two_pods_one_per_node():
    children = resources.desired_children(OWNER, spec(**MULTI), resources.Decisions(gpus=8, nodes=2))
    assert [c["kind"] for c in children] == ["Service", "LeaderWorkerSet", "PodDisruptionBudget"]
    lws = children[1]
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    # Not LWS's exclusive-topology: on the hostname it would keep the whole group on one node.
    assert "leaderworkerset.sigs.k8s.io/exclusive-topology" not in lws["metadata"].get("annotations", {})
    assert lws["spec"]["replicas"] == 3  # groups
    group = lws["spec"]["leaderWorkerTemplate"]
    assert group["size"] == 2 and group["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader, worker = group["leaderTemplate"], group["workerTemplate"]
    for template in (leader, worker):
        pod = template["spec"]
        assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8"}
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms == [
            {
                "matchExpressions": [
                    {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]}
                ]
            }
        ]
        # One pod of the model per node, whichever group it belongs to.
        assert pod["affinity"]["podAntiAffinity"] == {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"llm-operator.io/name": "m"}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    # One revision label for the pair: a change to either template is a new revision of both.
    assert (
        leader["metadata"]["labels"][resources.TEMPLATE_HASH_LABEL]
        == worker["metadata"]["labels"][resources.TEMPLATE_HASH_LABEL]
    )
    assert leader["metadata"]["labels"][resources.ROLE_LABEL] == "leader"
    assert worker["metadata"]["labels"][resources.ROLE_LABEL] == "worker"
    lead, work = leader["spec"]["containers"][0], worker["spec"]["containers"][0]
    layout = ["--tensor-parallel-size", "8", "--pipeline-parallel-size", "2", "--nnodes", "2"]
    assert lead["args"][3:13] == layout + ["--node-rank", "0", "--master-addr", "$(LWS_LEADER_ADDRESS)"]
    assert work["args"][3:13] == layout + [
        "--node-rank",
        "$(LWS_WORKER_INDEX)",
        "--master-addr",
        "$(LWS_LEADER_ADDRESS)",
    ]
    # The leader serves HTTP (port, probes); a worker runs headless and has neither.
    assert lead["args"][-4:] == ["--host", "0.0.0.0", "--port", "8000"] and "readinessProbe" in lead and "ports" in lead
    assert work["args"][-1] == "--headless" and "readinessProbe" not in work and "ports" not in work


def test_the_service_selects_the_leaders_only_and_the_pdb_every_pod():
    children = {
        c["kind"]: c for c in resources.desired_children(OWNER, spec(**MULTI), resources.Decisions(gpus=8, nodes=2))
    }
    assert children["Service"]["spec"]["selector"] == {"llm-operator.io/name": "m", "llm-operator.io/role": "leader"}
    # One pod of any group at a time: a pod lost restarts its whole group.
    assert children["PodDisruptionBudget"]["spec"] == {
        "selector": {"matchLabels": {"llm-operator.io/name": "m"}},
        "maxUnavailable": 1,
    }
    assert resources.pod_selector(OWNER, 2) == "llm-operator.io/name=m,llm-operator.io/role=leader"
    assert resources.pod_selector(OWNER) == "llm-operator.io/name=m"


def test_one_node_stays_a_deployment_with_no_role_label():
    d = resources.desired_children(OWNER, spec(**{**MULTI, "nodes": 1}), resources.Decisions(gpus=8, nodes=1))
    assert [c["kind"] for c in d] == ["Service", "Deployment", "PodDisruptionBudget"]
    assert resources.ROLE_LABEL not in d[1]["spec"]["template"]["metadata"]["labels"]
    assert d[0]["spec"]["selector"] == {"llm-operator.io/name": "m"}
    assert "--nnodes" not in container(d[1])["args"]


def test_the_engine_pull_policy_is_set_only_when_the_spec_names_one():
    assert "imagePullPolicy" not in container(
        resources.desired_deployment(OWNER, spec(gpus=1), resources.Decisions(gpus=1))
    )
    c = container(
        resources.desired_deployment(
            OWNER, spec(gpus=1, engine={"imagePullPolicy": "Never"}), resources.Decisions(gpus=1)
        )
    )
    assert c["imagePullPolicy"] == "Never"


def test_the_download_job_gets_the_cache_env_after_its_own():
    s = spec(
        cache={
            "enabled": True,
            "env": [
                {"name": "HF_ENDPOINT", "value": "http://mirror.local"},
                {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
            ],
        }
    )
    env = resources.desired_download_job(OWNER, s)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env] == [
        "MODEL_ID",
        "REVISION",
        "CACHE_DIR",
        "STALL_TIMEOUT_S",
        "HF_ENDPOINT",
        "HTTPS_PROXY",
    ]
    assert env[4]["value"] == "http://mirror.local"
    with pytest.raises(ValueError, match="must not set the download Job's own variables"):
        spec(cache={"enabled": True, "env": [{"name": "REVISION", "value": "main"}]})

"""The read model: trimming, one owner's snapshot, and our own writes until the watch echoes them."""

from __future__ import annotations

from llm_operator.controller.readmodel import ReadModel
from llm_operator.decide import observed as observe
from llm_operator.decide.observed import child_spec, owner_of, trim_child, trim_llmdeployment, trim_pod

KEY = ("ns", "m")


def llmd(rv: str, phase: str | None = None) -> dict:
    return {
        "apiVersion": "llm-operator.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {
            "name": "m",
            "namespace": "ns",
            "uid": "u",
            "generation": 1,
            "resourceVersion": rv,
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {"big": "x" * 1000},
        },
        "spec": {"model": {"id": "org/m"}},
        "status": {"phase": phase} if phase else {},
    }


def service(rv: str, port: int = 80) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "m",
            "namespace": "ns",
            "resourceVersion": rv,
            "managedFields": [{}],
            "labels": {"app.kubernetes.io/instance": "m"},
        },
        "spec": {"ports": [{"port": port}], "clusterIP": "10.0.0.1"},
        "status": {"loadBalancer": {}},
    }


def model(llmds=(), services=()) -> ReadModel:
    m = ReadModel()
    m.bind(
        {
            ReadModel.LLMD_INDEX: {KEY: [trim_llmdeployment(o) for o in llmds]} if llmds else {},
            ReadModel.child_index("Service"): {KEY: [trim_child(o) for o in services]} if services else {},
        }
    )
    return m


def test_trimming_keeps_what_decisions_read_and_drops_the_rest():
    t = trim_llmdeployment(llmd("5", "Ready"))
    assert t == {
        "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1, "resourceVersion": "5"},
        "spec": {"model": {"id": "org/m"}},
        "status": {"phase": "Ready"},
    }
    c = trim_child(service("7"))
    assert "managedFields" not in c["metadata"] and c["status"] == {}
    assert child_spec(c) == {"ports": [{"port": 80}], "clusterIP": "10.0.0.1"}
    pod = trim_pod(
        {
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app.kubernetes.io/instance": "m"}},
            "spec": {"containers": [{"name": "engine"}]},
            "status": {
                "podIP": "127.0.0.2",
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}],
            },
        }
    )
    assert pod["status"] == {"conditions": [{"type": "Ready", "status": "True"}], "podIP": "127.0.0.2"}
    assert owner_of(pod) == KEY and owner_of({"metadata": {"namespace": "ns"}}) is None


def test_trimming_keeps_the_gateways_wake_annotation_only():
    body = llmd("5")
    body["metadata"]["annotations"] = {
        "llm-operator.io/woken-by-request-at": "2026-01-01T00:00:00Z",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    }
    assert trim_llmdeployment(body)["metadata"]["annotations"] == {
        "llm-operator.io/woken-by-request-at": "2026-01-01T00:00:00Z"
    }


def test_a_snapshot_is_the_owner_and_its_children():
    obs = model([llmd("5")], [service("7")]).snapshot(KEY)
    assert obs.meta["resourceVersion"] == "5" and obs.child("Service", "m")["metadata"]["resourceVersion"] == "7"
    assert model().snapshot(KEY) is None


def test_our_write_counts_until_the_watch_has_caught_up():
    m = model([llmd("5")], [service("7")])
    m.remember(KEY, trim_child(service("9", port=81)), "Service", "m")
    m.remember(KEY, trim_llmdeployment(llmd("8", "Ready")), "LLMDeployment", "m")
    obs = m.snapshot(KEY)
    assert child_spec(obs.child("Service", "m"))["ports"] == [{"port": 81}]
    assert obs.llmd["status"] == {"phase": "Ready"}
    # The watch brings something newer than our write: it wins, and the overlay is dropped.
    m.bind(
        {
            ReadModel.LLMD_INDEX: {KEY: [trim_llmdeployment(llmd("10", "Progressing"))]},
            ReadModel.child_index("Service"): {KEY: [trim_child(service("10", port=82))]},
        }
    )
    obs = m.snapshot(KEY)
    assert obs.llmd["status"] == {"phase": "Progressing"}
    assert child_spec(obs.child("Service", "m"))["ports"] == [{"port": 82}]


def test_a_child_we_made_is_seen_before_its_watch_event_and_one_we_deleted_is_gone():
    m = model([llmd("5")])
    m.remember(KEY, trim_child(service("9")), "Service", "m")
    assert m.snapshot(KEY).child("Service", "m") is not None
    m = model([llmd("5")], [service("7")])
    m.remember(KEY, None, "Service", "m")
    assert m.snapshot(KEY).child("Service", "m") is None


def test_a_deleted_owner_is_gone_whatever_we_wrote_last():
    m = model()
    m.remember(KEY, trim_llmdeployment(llmd("8", "Ready")), "LLMDeployment", "m")
    assert m.snapshot(KEY) is None


def test_a_terminating_namespace_is_remembered_for_a_while():
    m = model([llmd("5")])
    m.namespace_terminating("ns", now=100.0)
    assert m.snapshot(KEY, now=101.0).namespace_terminating is True
    assert m.snapshot(KEY, now=100.0 + 301).namespace_terminating is False


def test_the_echo_of_our_own_write_is_known_and_anything_newer_is_not():
    m = model([llmd("5")], [service("7")])
    m.remember(KEY, trim_child(service("9")), "Service", "m")
    assert m.is_echo(KEY, service("9")) is True
    assert m.is_echo(KEY, service("10")) is False  # someone else changed it after us
    assert m.is_echo(KEY, llmd("9")) is False  # another kind, same name
    assert model().is_echo(KEY, service("9")) is False


def test_a_status_rewrite_of_fields_no_decision_reads_is_no_change():
    from llm_operator.decide.observed import same_but_version

    def deployment(rv, cond_time, reason="NewReplicaSetAvailable", ready=1):
        return trim_child(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "m", "namespace": "ns", "resourceVersion": rv},
                "spec": {"replicas": 1},
                "status": {
                    "replicas": 1,
                    "readyReplicas": ready,
                    "observedGeneration": 1,
                    "conditions": [
                        {"type": "Progressing", "status": "True", "reason": reason, "lastUpdateTime": cond_time}
                    ],
                },
            }
        )

    assert same_but_version(deployment("5", "t1"), deployment("6", "t2"))
    assert not same_but_version(deployment("5", "t1"), deployment("6", "t1", ready=0))
    stuck = deployment("7", "t3", reason="ProgressDeadlineExceeded")
    assert stuck["status"]["conditions"] == [
        {"type": "Progressing", "status": "True", "reason": "ProgressDeadlineExceeded"}
    ]
    assert not same_but_version(deployment("5", "t1"), stuck)
    assert not same_but_version(None, deployment("5", "t1"))


def test_a_node_keeps_its_labels_and_allocatable_gpus_only():
    from llm_operator.decide.observed import trim_node

    node = {
        "metadata": {
            "name": "n",
            "labels": {"pool": "a", "nvidia.com/gpu.product": "NVIDIA-L4"},
            "managedFields": [{}],
        },
        "status": {
            "allocatable": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": 4},
            "conditions": [{"type": "Ready", "lastHeartbeatTime": "t"}],
        },
    }
    assert trim_node(node) == {
        "metadata": {"name": "n", "labels": {"pool": "a", "nvidia.com/gpu.product": "NVIDIA-L4"}},
        "status": {"allocatable": {"nvidia.com/gpu": "4"}},
    }


def test_a_node_keeps_the_taints_that_keep_pods_off_without_their_times():
    from llm_operator.decide.observed import trim_node

    node = {
        "metadata": {"name": "n", "labels": {}},
        "spec": {
            "podCIDR": "10.0.0.0/24",
            "taints": [
                {"key": "dedicated", "value": "infer", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute", "timeAdded": "2025-01-01T00:00:00Z"},
                {"key": "soft", "value": "x", "effect": "PreferNoSchedule"},
            ],
        },
        "status": {"allocatable": {"nvidia.com/gpu": "4"}},
    }
    assert trim_node(node)["spec"] == {
        "taints": [
            {"key": "dedicated", "value": "infer", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
        ]
    }


def test_a_pods_container_states_are_kept_trimmed():
    pod = trim_pod(
        {
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {
                "containerStatuses": [
                    {
                        "name": "engine",
                        "image": "tgi",
                        "imageID": "sha256:x",
                        "restartCount": 6,
                        "ready": False,
                        "containerID": "containerd://1",
                        "started": False,
                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                        "lastState": {
                            "terminated": {
                                "reason": "OOMKilled",
                                "exitCode": 137,
                                "startedAt": "t0",
                                "finishedAt": "t1",
                                "containerID": "containerd://0",
                            }
                        },
                    },
                    {"name": "sidecar", "restartCount": 0, "state": {"running": {"startedAt": "t0"}}},
                ]
            },
        }
    )
    assert pod["status"]["containerStatuses"] == [
        {
            "name": "engine",
            "restartCount": 6,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
        }
    ]


def test_a_child_our_create_recorded_as_an_update_is_marked_until_applied():
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "m",
            "namespace": "ns",
            "managedFields": [
                {"manager": "llm-operator", "operation": "Update", "apiVersion": "v1"},
                {"manager": "llm-operator", "operation": "Update", "apiVersion": "v1", "subresource": "status"},
            ],
        },
    }
    assert observe.trim_child(body)[observe.CREATED_AS_UPDATE] is True
    body["metadata"]["managedFields"][0]["operation"] = "Apply"
    assert observe.CREATED_AS_UPDATE not in observe.trim_child(body)
    body["metadata"]["managedFields"] = [{"manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1"}]
    assert observe.CREATED_AS_UPDATE not in observe.trim_child(body)


def test_the_operators_downloader_image_is_in_every_snapshot():
    m = model([llmd("5")])
    assert m.snapshot(KEY).downloader_image == ""
    m.bind(m._indexes, downloader_image="registry.example.com/ml/llm-operator:1.2")
    assert m.snapshot(KEY).downloader_image == "registry.example.com/ml/llm-operator:1.2"

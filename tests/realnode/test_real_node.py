"""The real-node tier: a kubelet with containerd and runc joins the local control plane
(hack/realnode.py) and runs pods as real containers from images built here (hack/images.py):
the operator from the project's own Dockerfile, installed by its Helm chart, and an engine
stand-in whose pods the operator's status judges. No GPU: the node advertises GPUs it does not
have, and the stand-in serves no model.

Runs in `make test`. When the node cannot start here (no root, a package missing), the tests
fail with the reason; nothing is skipped."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from images import BASE_NAME, OPERATOR_IMAGE, RUNTIME_IMAGE, STANDIN_IMAGE, Builder, ensure_packages
from realnode import GATEWAY, NODE_LABEL, NODE_NAME, TAINT_KEY, RealNode, host_snapshot
from support.cluster import Kubectl, wait_for
from support.hub import HubServer, safetensors_header_only
from support.loopback import REAL_NODE_NETWORK, real_node_url
from support.paths import ROOT

NAMESPACE = "llm-realnode"
OPERATOR_NAMESPACE = "llm-realnode-system"
GPU_PRODUCT = "NVIDIA-L4"
ON_THE_NODE = {
    "nodeSelector": {NODE_LABEL: "true"},
    "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
}


@pytest.fixture(scope="module")
def images() -> dict:
    ensure_packages()
    return Builder().build()


def on_node_pod(name: str, image: str, command: list[str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            **ON_THE_NODE,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never", "command": command}],
        },
    }


def test_the_node_runs_containers_and_down_leaves_the_host_as_found(cluster, images):
    """Up, a real container (its log read through the apiserver and the kubelet), then down:
    sysctls, links, network namespaces, iptables, cgroups and processes as before."""
    kubectl = Kubectl(cluster)
    before = host_snapshot()
    node = RealNode(cluster)
    node.up([images["pause"][1], images["python"][1]])
    try:
        pod = on_node_pod(
            "real-hello",
            BASE_NAME,
            ["python3", "-c", "import time; print('hello from a real container', flush=True); time.sleep(600)"],
        )
        kubectl.run("apply", "-f", "-", input=json.dumps(pod))
        wait_for(
            "pod real-hello to run",
            lambda: (
                kubectl.run("get", "pod", "real-hello", "-o", "jsonpath={.status.phase}", check=False).stdout
                == "Running"
            ),
            60,
        )
        ip = kubectl.run("get", "pod", "real-hello", "-o", "jsonpath={.status.podIP}").stdout
        assert ipaddress.ip_address(ip) in REAL_NODE_NETWORK, ip
        wait_for(
            "the container's log through kubectl logs",
            lambda: "hello from a real container" in kubectl.run("logs", "real-hello", check=False).stdout,
            30,
        )
        during = host_snapshot()
        # What the test checks does change while the node runs: a bridge, a pod's network namespace.
        assert during["links"] != before["links"] and during["netns"] != before["netns"]
    finally:
        kubectl.run("delete", "pod", "real-hello", "--force", "--grace-period=0", "--wait=false", check=False)
        problems = node.down()
        kubectl.run("delete", "node", NODE_NAME, "--wait=false", check=False)
    assert problems == []
    assert host_snapshot() == before


# ---- the operator and the engine stand-in on the node -----------------------------------------


@pytest.fixture(scope="module")
def real_node(cluster, images):
    node = RealNode(cluster)
    node.up([archive for _, archive in images.values()])
    kubectl = Kubectl(cluster)
    # GPUs it does not have, as the kwok nodes do: the operator plans and places by these.
    kubectl.run(
        "label",
        "node",
        NODE_NAME,
        "nvidia.com/gpu.present=true",
        f"nvidia.com/gpu.product={GPU_PRODUCT}",
        "nvidia.com/gpu.memory=23034",
        "nvidia.com/gpu.count=8",
        "--overwrite",
    )
    kubectl.run(
        "patch",
        "node",
        NODE_NAME,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"capacity": {"nvidia.com/gpu": "8"}}}),
    )
    yield node
    kubectl.run("delete", "namespace", NAMESPACE, OPERATOR_NAMESPACE, "--wait=false", check=False)
    problems = node.down()
    kubectl.run("delete", "node", NODE_NAME, "--wait=false", check=False)
    assert problems == []


@pytest.fixture(scope="module")
def chart_operator(cluster, crd_installed, real_node, operator, tmp_path_factory):
    """The operator as the chart installs it, from the image built from the Dockerfile, in a pod
    on the real node with the chart's ServiceAccount. The session's own operator process
    (which watches every namespace) is stopped meanwhile, so that one operator owns these."""
    kubectl = Kubectl(cluster)
    operator.stop()
    try:
        kubectl.run("create", "namespace", NAMESPACE, check=False)
        values = tmp_path_factory.mktemp("realnode-chart") / "values.json"  # JSON is YAML
        values.write_text(
            json.dumps(
                {
                    "image": {"repository": "localhost/llm-operator", "tag": "dev", "pullPolicy": "Never"},
                    **ON_THE_NODE,
                    "gateway": {"enabled": False},
                    "hub": {"offline": True},
                    "operator": {"extraArgs": ["--autoscale-interval=2"]},
                    "rbac": {"scope": "namespaced", "namespaces": [NAMESPACE]},
                }
            )
        )
        helm = [str(cluster.bin_dir / "helm"), f"--kubeconfig={cluster.kubeconfig}"]
        proc = subprocess.run(
            [
                *helm,
                "install",
                "real",
                str(ROOT / "charts" / "llm-operator"),
                "-n",
                OPERATOR_NAMESPACE,
                "--create-namespace",
                "--wait",
                "--timeout=120s",
                "-f",
                str(values),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if proc.returncode != 0:
            pods = kubectl.run("get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "wide", check=False).stdout
            logs = kubectl.run(
                "logs", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=llm-operator", "--tail=50", check=False
            ).stdout
            raise AssertionError(f"helm install failed: {proc.stderr}\n{pods}\n{logs}")
        yield
        # Gone while their operator still runs, before the session's operator comes back.
        kubectl.run("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s", check=False)
        subprocess.run(
            [*helm, "uninstall", "real", "-n", OPERATOR_NAMESPACE, "--wait", "--timeout=60s"],
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        operator.start()


def llmd(name: str, **engine) -> dict:
    spec = {
        "model": {"id": "Qwen/Qwen3-0.6B"},
        "gpus": 1,
        "gpu": {"product": GPU_PRODUCT},
        "limits": {"maxInputTokens": 1024, "maxTotalTokens": 2048},
        "engine": {
            "image": STANDIN_IMAGE,
            "imagePullPolicy": "Never",
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            **engine,
        },
        "scheduling": ON_THE_NODE,
    }
    return {
        "apiVersion": "llm-operator.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def status(kubectl: Kubectl, name: str) -> dict:
    out = kubectl.run("get", "llmd", name, "-n", NAMESPACE, "-o", "json", check=False).stdout
    return json.loads(out).get("status", {}) if out else {}


def ready_condition(kubectl: Kubectl, name: str) -> dict:
    return next((c for c in status(kubectl, name).get("conditions", []) if c["type"] == "Ready"), {})


def wait_ready(kubectl: Kubectl, name: str, timeout: float) -> None:
    """Wait for the Ready condition; on timeout, fail with the status, the pods and their logs."""
    try:
        wait_for(
            f"LLMDeployment {name} to be Ready", lambda: ready_condition(kubectl, name).get("status") == "True", timeout
        )
    except AssertionError as err:
        pods = kubectl.run("get", "pods,jobs,pvc", "-n", NAMESPACE, "-o", "wide", check=False).stdout
        logs = kubectl.run(
            "logs",
            "-n",
            NAMESPACE,
            "-l",
            f"app.kubernetes.io/instance={name}",
            "--all-containers",
            "--tail=20",
            "--prefix",
            check=False,
        )
        raise AssertionError(
            f"{err}\nstatus: {json.dumps(status(kubectl, name), indent=1)}\n{pods}\n{logs.stdout}{logs.stderr}"
        ) from None


def test_the_chart_runs_the_operator_image_and_it_serves_a_stand_in_engine(cluster, chart_operator):
    kubectl = Kubectl(cluster)
    op_pod = kubectl.run(
        "get", "pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=llm-operator", "-o", "json"
    ).stdout
    pods = json.loads(op_pod)["items"]
    assert [p["spec"]["nodeName"] for p in pods] == [NODE_NAME]
    assert pods[0]["spec"]["containers"][0]["image"] == OPERATOR_IMAGE
    assert pods[0]["spec"]["serviceAccountName"] == "real-llm-operator"
    kubectl.run("apply", "-f", "-", input=json.dumps(llmd("standin")))
    wait_ready(kubectl, "standin", 120)
    st = status(kubectl, "standin")
    assert st["ready"] == "1/1", st
    pod = json.loads(
        kubectl.run("get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/instance=standin", "-o", "json").stdout
    )["items"][0]
    assert pod["spec"]["nodeName"] == NODE_NAME
    # Its readiness came from the kubelet calling the stand-in's /health; a request answers too.
    body = json.dumps({"inputs": "hello there", "parameters": {"max_new_tokens": 3}}).encode()
    req = urllib.request.Request(
        real_node_url(pod, 8080, "/generate"), data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["generated_text"] == "tok0 tok1 tok2"
    table = kubectl.run("get", "llmd", "standin", "-n", NAMESPACE).stdout
    assert "1/1" in table and "Ready" in table, table


def test_the_operator_in_its_pod_scrapes_the_engine_and_scales_it(cluster, chart_operator):
    """Autoscaling mode operator, for real: the operator's pod reads the stand-in pod's /metrics
    over the pod network and, with requests queueing, scales the LLMDeployment to 2."""
    kubectl = Kubectl(cluster)
    wait_ready(kubectl, "standin", 120)  # made by the test above
    kubectl.run(
        "patch",
        "llmd",
        "standin",
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "autoscaling": {
                        "mode": "operator",
                        "minReplicas": 1,
                        "maxReplicas": 2,
                        "metric": "queue",
                        "target": 1,
                        "scaleDownDelaySeconds": 600,
                    }
                }
            }
        ),
    )
    pod = json.loads(
        kubectl.run("get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/instance=standin", "-o", "json").stdout
    )["items"][0]
    url = real_node_url(pod, 8080, "/generate")
    body = json.dumps({"inputs": "load", "parameters": {"max_new_tokens": 400}}).encode()

    def one() -> int:
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status

    # 8 slots, 8 s a request: 40 at once keep requests queued for about 40 s.
    with ThreadPoolExecutor(40) as pool:
        answers = [pool.submit(one) for _ in range(40)]
        wait_for(
            "the operator to scale standin to 2",
            lambda: (
                kubectl.run(
                    "get", "llmd", "standin", "-n", NAMESPACE, "-o", "jsonpath={.spec.replicas}", check=False
                ).stdout
                == "2"
            ),
            90,
        )
        assert [a.result(timeout=150) for a in answers] == [200] * 40
    last = status(kubectl, "standin")["autoscaler"]
    assert last, status(kubectl, "standin")


@pytest.mark.parametrize(
    "name, engine, model, reason",
    [
        ("no-secret", {}, {"tokenSecretRef": {"name": "absent-token"}}, "CreateContainerConfigError"),
        ("no-image", {"image": "localhost/llm-engine-standin:absent"}, {}, "ErrImageNeverPull"),
        ("exits", {"env": [{"name": "STANDIN_EXIT_CODE", "value": "1"}]}, {}, "CrashLoopBackOff"),
        (
            "oom",
            {
                "env": [{"name": "STANDIN_ALLOCATE_MIB", "value": "1024"}],
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "96Mi"}},
            },
            {},
            "OOMKilled",
        ),
    ],
)
def test_a_container_that_cannot_run_shows_its_reason(cluster, chart_operator, name, engine, model, reason):
    kubectl = Kubectl(cluster)
    obj = llmd(name, **engine)
    obj["spec"]["model"].update(model)
    kubectl.run("apply", "-f", "-", input=json.dumps(obj))

    def shown() -> bool:
        return reason in kubectl.run("get", "llmd", name, "-n", NAMESPACE, check=False).stdout

    wait_for(f"kubectl get llmd {name} to show {reason}", shown, 180)
    cond = ready_condition(kubectl, name)
    assert cond["status"] == "False" and cond["reason"] == reason, cond
    kubectl.run("delete", "llmd", name, "-n", NAMESPACE, "--wait=false")


def catalog_config(model_id: str) -> bytes:
    entries = json.loads((ROOT / "operator" / "llm_operator" / "facts" / "data" / "catalog" / "qwen.json").read_text())[
        "models"
    ]
    return json.dumps(next(e for e in entries if e["id"] == model_id)["config"]).encode()


def test_the_download_job_fills_a_real_volume_that_the_engine_mounts_read_only(cluster, chart_operator, real_node):
    """`llm-runtime download` in the operator's image, in a container, against a Hub stand-in on
    the bridge, into a local PersistentVolume (a directory on the node); the operator reads its
    termination message;
    the stand-in engine starts only if the snapshot is on the volume, which it has read-only."""
    kubectl = Kubectl(cluster)
    model = "Qwen/Qwen3-0.6B"
    hub = HubServer(
        {
            model: {
                "config.json": catalog_config(model),
                "model.safetensors": safetensors_header_only({"all": ("BF16", [596049920])}),
            }
        },
        host=GATEWAY,
    )
    volume = real_node.dir / "volumes" / "weights"
    volume.mkdir(parents=True, exist_ok=True)
    os.chmod(volume, 0o777)  # hostPath volumes take no fsGroup: the Job runs as uid 65532
    kubectl.run(
        "apply",
        "-f",
        "-",
        input="\n---\n".join(
            json.dumps(o)
            for o in (
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "StorageClass",
                    "metadata": {"name": "realnode-local"},
                    "provisioner": "kubernetes.io/no-provisioner",
                    "volumeBindingMode": "Immediate",
                },
                # A local volume: its node affinity is what puts the download Job (which has no
                # scheduling constraints of its own) on the node that has the disk.
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": "realnode-weights"},
                    "spec": {
                        "capacity": {"storage": "1Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "realnode-local",
                        "persistentVolumeReclaimPolicy": "Retain",
                        "local": {"path": str(volume)},
                        "nodeAffinity": {
                            "required": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}
                                        ]
                                    }
                                ]
                            }
                        },
                    },
                },
            )
        ),
    )
    # The Job does not tolerate the node's taint (no other test runs meanwhile): lifted for it.
    kubectl.run("taint", "nodes", NODE_NAME, f"{TAINT_KEY}:NoSchedule-")
    try:
        obj = llmd("cached", env=[{"name": "STANDIN_REQUIRE_WEIGHTS", "value": "1"}])
        obj["spec"]["cache"] = {
            "enabled": True,
            "size": "1Gi",
            "storageClassName": "realnode-local",
            "accessMode": "ReadWriteOnce",
            "downloaderImage": OPERATOR_IMAGE,
            "env": [{"name": "HF_ENDPOINT", "value": hub.endpoint}],
        }
        kubectl.run("apply", "-f", "-", input=json.dumps(obj))
        wait_ready(kubectl, "cached", 240)
        job = json.loads(
            kubectl.run("get", "jobs", "-n", NAMESPACE, "-l", "app.kubernetes.io/instance=cached", "-o", "json").stdout
        )["items"][0]
        assert job["status"].get("succeeded") == 1, job["status"]
        downloader = json.loads(
            kubectl.run(
                "get", "pods", "-n", NAMESPACE, "-l", f"job-name={job['metadata']['name']}", "-o", "json"
            ).stdout
        )["items"][0]
        assert downloader["spec"]["nodeName"] == NODE_NAME
        report = json.loads(downloader["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
        assert report["modelId"] == model and report["numLayers"] == 28
        # The operator planned from the Job's report of this revision.
        facts = status(kubectl, "cached")["modelFacts"]
        assert (facts["source"], facts["numLayers"]) == ("job", 28), facts
        snapshots = volume / "hub" / "models--Qwen--Qwen3-0.6B" / "snapshots"
        assert [p.name for p in (snapshots / report["commit"]).iterdir()] != []
        assert any(
            path.endswith("/resolve/" + report["commit"] + "/model.safetensors") or "model.safetensors" in path
            for _, path, _ in hub.requests
        )
        serving = json.loads(
            kubectl.run(
                "get",
                "pods",
                "-n",
                NAMESPACE,
                "-l",
                "app.kubernetes.io/instance=cached,app.kubernetes.io/component=server",
                "-o",
                "json",
            ).stdout
        )["items"][0]
        log = kubectl.run("logs", "-n", NAMESPACE, serving["metadata"]["name"]).stdout
        assert "weights found" in log and "/data is read-only" in log, log
    finally:
        kubectl.run("delete", "llmd", "cached", "-n", NAMESPACE, "--wait=true", "--timeout=60s", check=False)
        kubectl.run("delete", "pv/realnode-weights", "storageclass/realnode-local", "--wait=false", check=False)
        kubectl.run("taint", "nodes", NODE_NAME, f"{TAINT_KEY}=true:NoSchedule", "--overwrite")
        hub.close()


def test_the_runtime_image_checks_the_pod_then_execs_the_launcher(cluster, real_node):
    """The Dockerfile's runtime target (over a stand-in for TGI's image): `llm-runtime serve`,
    installed with --no-deps beside what the base ships, refuses to start without a GPU and
    says why; with --skip-checks it execs the launcher, which the kubelet's probe finds ready."""
    kubectl = Kubectl(cluster)
    env = [
        {"name": "LLM_MODEL_ID", "value": "Qwen/Qwen3-0.6B"},
        {"name": "LLM_NUM_SHARD", "value": "1"},
        {"name": "LLM_PORT", "value": "8080"},
    ]
    checks = on_node_pod("runtime-checks", RUNTIME_IMAGE, [])
    serve = on_node_pod("runtime-serve", RUNTIME_IMAGE, [])
    for pod, args in ((checks, []), (serve, ["--skip-checks"])):
        container = pod["spec"]["containers"][0]
        del container["command"]  # the image's entrypoint: llm-runtime serve
        container.update(
            args=args, env=env, readinessProbe={"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 1}
        )
    try:
        kubectl.run("apply", "-f", "-", input=json.dumps(checks) + "\n---\n" + json.dumps(serve))
        wait_for(
            "pod runtime-checks to fail",
            lambda: (
                kubectl.run("get", "pod", "runtime-checks", "-o", "jsonpath={.status.phase}", check=False).stdout
                == "Failed"
            ),
            90,
        )
        ended = json.loads(kubectl.run("get", "pod", "runtime-checks", "-o", "json").stdout)
        assert ended["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] != 0
        log = kubectl.run("logs", "runtime-checks").stdout
        assert "check FAILED" in log and "not starting TGI" in log, log
        wait_for(
            "pod runtime-serve to be ready",
            lambda: (
                kubectl.run(
                    "get",
                    "pod",
                    "runtime-serve",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                    check=False,
                ).stdout
                == "True"
            ),
            90,
        )
        assert "engine stand-in for Qwen/Qwen3-0.6B" in kubectl.run("logs", "runtime-serve").stdout
    finally:
        kubectl.run(
            "delete",
            "pod",
            "runtime-checks",
            "runtime-serve",
            "--force",
            "--grace-period=0",
            "--wait=false",
            check=False,
        )

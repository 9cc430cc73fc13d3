"""Shared fixtures: one local control plane per test session, a fresh namespace per test,
and the operator running against it as a real process.

The control plane is never skipped: if it cannot start, every integration test errors
with the reason (missing Go toolchain, unreachable module proxy, a component that died).
Fixtures and hooks only: what the tests share besides lives in tests/support/.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from localcluster import LocalCluster, tools_dir
from support.cluster import Kubectl, bound_volume, install_crd, make_storage_class
from support.gatewayprocess import GatewayProcess
from support.hub import (
    HUB_MISSING,
    HUB_MISSING_REVISIONS,
    HUB_MODELS,
    HUB_UNREACHABLE,
    TINY_LORA,
    TINY_MODEL,
    HubServer,
    safetensors_header_only,
)
from support.manifests import CACHE_STORAGE_CLASS
from support.operatorprocess import OperatorProcess
from support.paths import CHART, DATA
from support.podmetrics import PodMetrics
from support.serviceaccount import install_gateway_rbac, install_operator_rbac

ARGOCD_HEALTH = CHART / "argocd-health.lua"
TESTS = Path(__file__).resolve().parent
# Each tier is a directory of tests/ and a marker of that name (pyproject.toml registers them):
# `pytest -m unit` runs tests/unit, `-m "not realnode"` leaves out the real node, and so on.
TIERS = ("unit", "integration", "chart", "faults", "realnode")
# The real-engine tier is one file of tests/integration: it carries both markers.
REAL_ENGINE = TESTS / "integration" / "test_real_engine.py"


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items) -> None:
    """Mark every test with its tier, from its directory (tests/<tier>/...)."""
    for item in items:
        path = Path(item.path)
        if not path.is_relative_to(TESTS):
            continue
        tier = path.relative_to(TESTS).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(
                f"{path}: tests live in one tier's directory, tests/{{{','.join(TIERS)}}}/; "
                "a new tier needs its marker in pyproject.toml and in TIERS in tests/conftest.py"
            )
        item.add_marker(tier)
        if path == REAL_ENGINE:
            item.add_marker("realengine")


@pytest.fixture(scope="session")
def client_verdicts():
    """Judge objects as the real clients do: `run(objects)` gives, per object, kstatus'
    (cli-utils) and Argo CD's (argocd-health.lua under gopher-lua) verdicts, each a dict with
    status and message, from hack/statuscheck (built and cached by hack/tools.sh)."""
    binary = tools_dir() / "statuscheck"

    def run(objects: list[dict], health: Path = ARGOCD_HEALTH) -> list[dict]:
        proc = subprocess.run(
            [str(binary), f"--argocd-health={health}"],
            input=json.dumps(objects),
            text=True,
            capture_output=True,
            timeout=30,
        )
        if proc.returncode != 0:
            raise AssertionError(f"statuscheck failed ({proc.returncode}): {proc.stderr.strip()}")
        out = [json.loads(line) for line in proc.stdout.splitlines()]
        want = sum(len(o["items"]) if o.get("kind", "").endswith("List") else 1 for o in objects)
        assert len(out) == want, f"statuscheck judged {len(out)} of {want} objects:\n{proc.stdout}"
        return out

    return run


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> LocalCluster:
    root = tmp_path_factory.mktemp("cluster")
    plane = LocalCluster(root, bin_dir=tools_dir())
    secs = plane.up()
    print(f"\nlocal control plane up in {secs:.1f}s ({root})")
    yield plane
    plane.down()


@pytest.fixture
def namespace(cluster) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    Kubectl(cluster).run("create", "namespace", name)
    yield name
    Kubectl(cluster).run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def kubectl(cluster, namespace) -> Kubectl:
    return Kubectl(cluster, namespace)


@pytest.fixture
def volume(cluster, kubectl):
    """For cached weights (support.manifests.cached): the StorageClass CACHE_STORAGE_CLASS, with no
    provisioner, and `volume(claim)` binds a volume ahead to the claim the operator will make."""
    make_storage_class(cluster, CACHE_STORAGE_CLASS)

    def make(claim: str) -> None:
        bound_volume(cluster, kubectl.namespace, claim, CACHE_STORAGE_CLASS)

    return make


@pytest.fixture(scope="session")
def crd_installed(cluster) -> None:
    install_crd(cluster)


@pytest.fixture(scope="session")
def tiny_repos(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """The tiny Llama and its LoRA adapter (hack/tinymodel.py), as Hub repositories: what a real
    engine serves in the real-engine tier."""
    import tinymodel

    made = tinymodel.make(tmp_path_factory.mktemp("tiny-model"), base_repo=TINY_MODEL)
    return {
        repo: {f.name: f.read_bytes() for f in sorted(made[kind].iterdir())}
        for repo, kind in ((TINY_MODEL, "model"), (TINY_LORA, "lora"))
    }


@pytest.fixture(scope="session")
def tiny_hub(tiny_repos):
    """A Hub stand-in with the whole protocol llm-runtime download uses (tests/support/hub.py),
    serving the tiny model and its adapter under commit ids of their content."""
    server = HubServer(tiny_repos)
    yield server
    server.close()


@pytest.fixture(scope="session")
def hub(tiny_repos):
    """The Hub stand-in the session's operator reads model facts from: the models of
    tests/data/models (HUB_MODELS), quantized checkpoints, LoRA adapters and the tiny model."""
    models = DATA / "models"
    params = json.loads((models / "params.json").read_text())
    repos = {
        repo: {
            "config.json": (models / short / "config.json").read_bytes(),
            "model.safetensors": safetensors_header_only({"all": ("BF16", [params[short]])}),
        }
        for repo, short in HUB_MODELS.items()
    }
    # Pre-quantized checkpoints: TGI reads quantization_config from config.json and quantizes by it.
    mistral = json.loads((models / "mistral-7b" / "config.json").read_text())
    for repo, quantization in (
        ("test/mistral-7b-awq", {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm"}),
        ("test/mistral-7b-exl2", {"quant_method": "exl2", "bits": 4.0}),
    ):
        repos[repo] = {
            "config.json": json.dumps({**mistral, "quantization_config": quantization}).encode(),
            "model.safetensors": safetensors_header_only({"all": ("BF16", [params["mistral-7b"]])}),
        }
    # LoRA adapters as PEFT saves them: three trained on test/mistral-7b, one on another model.
    for repo, base in (
        ("test/support-lora", "test/mistral-7b"),
        ("test/sql-lora", "test/mistral-7b"),
        ("test/summary-lora", "mirror-org/Mistral-7B"),
        ("test/llama-lora", "meta-llama/Llama-2-7b-hf"),
    ):
        repos[repo] = {
            "adapter_config.json": json.dumps(
                {
                    "base_model_name_or_path": base,
                    "peft_type": "LORA",
                    "task_type": "CAUSAL_LM",
                    "r": 16,
                    "lora_alpha": 32,
                    "lora_dropout": 0.05,
                    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
                    "bias": "none",
                }
            ).encode()
        }
    # The tiny model's files as they are: the operator plans it from its own config.json.
    repos.update(tiny_repos)
    # Repositories it does not hold answer as gated (the operator goes on with the spec's
    # GPUs, as for a private model), but for the ones named as missing: those do not exist.
    # Any revision names the one commit (adapters pinned to v1), but for the missing ones.
    server = HubServer(
        repos,
        gated={"test/gated"},
        missing=HUB_MISSING,
        missing_revisions=HUB_MISSING_REVISIONS,
        unreachable=HUB_UNREACHABLE,
        any_revision=True,
    )
    yield server
    server.close()


@pytest.fixture(scope="session")
def pod_metrics():
    server = PodMetrics()
    yield server
    server.close()


@pytest.fixture(scope="session")
def gateway(cluster, crd_installed, tmp_path_factory):
    # With exactly the chart's rules for the gateway, as its own ServiceAccount.
    kubeconfig = install_gateway_rbac(cluster, release="llm-operator-gw")
    gw = GatewayProcess(kubeconfig, tmp_path_factory.mktemp("gateway") / "gateway.log")
    gw.start()
    yield gw
    gw.stop()
    refused = gw.refusals()
    assert not refused, "the chart's RBAC refused the gateway:\n" + "\n".join(refused[:10])


@pytest.fixture(scope="session")
def operator(cluster, crd_installed, hub, pod_metrics, gateway, tmp_path_factory) -> OperatorProcess:
    home = tmp_path_factory.mktemp("operator")
    # The Hub is the one edge no test reaches: the operator reads model facts from the stand-in.
    # kwok pods serve nothing: their /metrics come from a local server the tests control.
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home / "hf")}
    # The local plane runs LeaderWorkerSet: multi-node replicas on, as the chart's lws.enabled does.
    # The session's gateway runs beside it: the autoscaler reads its counts (metric concurrency).
    args = (
        f"--pod-metrics-url={pod_metrics.url}",
        "--autoscale-interval=1",
        "--leaderworkersets",
        f"--gateway-metrics-url={gateway.url}/metrics",
    )
    # The operator runs with exactly the Helm chart's RBAC, as its ServiceAccount: every
    # integration test is also a test that those rules are enough. (A release of its own:
    # tests of the default values apply theirs as release llm-operator.)
    op = OperatorProcess(
        cluster,
        home / "operator.log",
        extra_env=env,
        kubeconfig=install_operator_rbac(cluster, set_values=("lws.enabled=true",), release="llm-operator-lws"),
        extra_args=args,
    )
    op.start()
    yield op
    op.stop()
    refused = op.refusals()
    assert not refused, "the chart's RBAC refused the operator:\n" + "\n".join(refused[:10])

"""engines/: the seam that knows an engine's argv, env, probes, port, metrics and quantizations."""

from __future__ import annotations

import pytest

from llm_common.tgi import LauncherSettings, launcher_args
from llm_operator import api, resources
from llm_operator.engines import engine_for, engine_named
from llm_operator.engines.tgi import TGI


def spec(**fields) -> api.LLMDeploymentSpec:
    return api.parse_spec({"model": {"id": "org/model"}, **fields})


def test_the_default_spec_gets_tgi():
    assert engine_for(spec()) is TGI
    assert engine_named("tgi") is TGI
    with pytest.raises(ValueError, match="unknown engine 'vllm'"):
        engine_named("vllm")


def test_args_are_the_runtimes_argv():
    s = spec(quantization="awq", limits={"maxTotalTokens": 4096}, engine={"args": ["--cuda-graphs", "1"]})
    assert TGI.args(s, 2, ("a=/data/x",)) == launcher_args(LauncherSettings(
        "org/model", num_shard=2, quantize="awq", max_total_tokens=4096, extra_args=("--cuda-graphs", "1"),
        lora_adapters=("a=/data/x",)))


def test_the_deployment_takes_image_port_probes_and_env_from_the_engine():
    s = spec(cache={"enabled": True})
    container = resources.desired_deployment(resources.Owner("m", "ns", "u"), s, resources.Decisions(gpus=1))[
        "spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == TGI.default_image
    assert container["ports"][0]["containerPort"] == TGI.port
    assert {k: container[k] for k in TGI.probes()} == TGI.probes()
    assert {e["name"]: e["value"] for e in container["env"]} == TGI.env(s) == {
        "HF_HOME": "/data", "USAGE_STATS": "off", "HF_HUB_OFFLINE": "1"}


def test_hpa_metric_names_come_from_the_engine():
    for metric in ("queue", "concurrency"):
        hpa = resources.desired_hpa(resources.Owner("m", "ns", "u"), spec(autoscaling={"mode": "hpa", "metric": metric}))
        assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == TGI.load_metrics.per_pod[metric]


def test_load_metrics():
    m = TGI.load_metrics
    assert m.load({"tgi_queue_size": 3.0, "tgi_batch_current_size": 5.0}, "queue") == 3.0
    assert m.load({"tgi_queue_size": 3.0, "tgi_batch_current_size": 5.0}, api.ScalingMetric.concurrency) == 8.0
    assert m.load({"tgi_batch_max_total_tokens": 1.0}, "queue") == 0.0     # the engine's, gauge not set yet
    assert m.load({"process_cpu_seconds_total": 1.0}, "queue") is None     # not the engine's metrics
    with pytest.raises(ValueError, match="unknown autoscaling metric"):
        m.load({}, "rps")


def test_the_api_offers_the_engines_quantizations():
    assert tuple(q.value for q in api.Quantization) == TGI.quantizations
    assert api.DEFAULT_TGI_IMAGE == TGI.default_image

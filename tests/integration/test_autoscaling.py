"""Autoscaling (issue 6): an HPA the control plane accepts; the operator's own loop scaling
up at once and down after the delay, explained in status and Events, carrying on across a
restart; and kubectl scale when autoscaling is off."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from support.cluster import condition, events, wait_for
from support.manifests import llmd

pytestmark = pytest.mark.usefixtures("operator")

METRICS = Path(__file__).resolve().parents[1] / "data" / "tgi-metrics"
IDLE = (METRICS / "idle.txt").read_text()
BUSY = (METRICS / "busy.txt").read_text()  # tgi_queue_size 20 per pod


def replicas(kubectl, name: str) -> tuple[int, int]:
    return kubectl.get("llmd", name)["spec"]["replicas"], kubectl.get("deployment", name)["spec"]["replicas"]


def test_mode_hpa_makes_an_hpa_the_control_plane_accepts(kubectl):
    kubectl.apply(
        json.dumps(
            llmd(
                "hpa",
                gpus=1,
                autoscaling={
                    "mode": "hpa",
                    "minReplicas": 1,
                    "maxReplicas": 3,
                    "target": 4,
                    "scaleDownDelaySeconds": 120,
                },
            )
        )
    )
    hpa = wait_for("the HPA", lambda: kubectl.get("hpa", "hpa"), 30)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "llm-operator.io/v1alpha1",
        "kind": "LLMDeployment",
        "name": "hpa",
    }
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "tgi_queue_size"
    # The controller manager evaluates it: it reads the scale subresource (no metrics adapter here).
    wait_for(
        "the HPA controller to report on it",
        lambda: (kubectl.get("hpa", "hpa").get("status") or {}).get("conditions"),
        60,
    )
    # HPAs are watched: one deleted by hand is made again at once, not at the next resync (300 s).
    uid = hpa["metadata"]["uid"]
    kubectl.run("delete", "hpa", "hpa", "--wait=true")
    start = time.monotonic()
    back = wait_for(
        "the deleted HPA made again", lambda: (h := kubectl.get("hpa", "hpa")) and h["metadata"]["uid"] != uid and h, 15
    )
    print(f"\ndeleted HPA made again in {time.monotonic() - start:.2f}s")
    assert back["spec"]["scaleTargetRef"]["name"] == "hpa"
    kubectl.run("patch", "llmd", "hpa", "--type=merge", "-p", '{"spec": {"autoscaling": {"mode": "none"}}}')
    wait_for("the HPA to be pruned", lambda: kubectl.get("hpa", "hpa") is None, 30)


def test_hpa_on_the_gateways_metric_is_an_external_metric_the_control_plane_accepts(kubectl):
    refused = kubectl.run(
        "apply",
        "-f",
        "-",
        check=False,
        input=json.dumps(
            llmd("gw-hpa", gpus=1, autoscaling={"mode": "hpa", "metric": "queue", "hpaSource": "gateway"})
        ),
    )
    assert refused.returncode != 0 and "spec.autoscaling.hpaSource" in refused.stderr, refused.stderr
    assert "hpaSource gateway needs mode hpa and metric concurrency" in refused.stderr
    kubectl.apply(
        json.dumps(
            llmd(
                "gw-hpa",
                gpus=1,
                autoscaling={
                    "mode": "hpa",
                    "minReplicas": 1,
                    "maxReplicas": 3,
                    "metric": "concurrency",
                    "target": 4,
                    "hpaSource": "gateway",
                },
            )
        )
    )
    hpa = wait_for("the HPA", lambda: kubectl.get("hpa", "gw-hpa"), 30)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "External",
            "external": {
                "metric": {
                    "name": "llm_gateway_requests_in_flight",
                    "selector": {"matchLabels": {"model_namespace": kubectl.namespace, "model_name": "gw-hpa"}},
                },
                "target": {"type": "AverageValue", "averageValue": "4"},
            },
        }
    ]
    # The controller manager evaluates it: with no external-metrics adapter here, it says so.
    wait_for(
        "the HPA controller to report on it",
        lambda: (kubectl.get("hpa", "gw-hpa").get("status") or {}).get("conditions"),
        60,
    )


def test_kubectl_scale_changes_the_deployment_when_autoscaling_is_off(kubectl):
    kubectl.apply(json.dumps(llmd("manual", gpus=1)))
    kubectl.run("wait", "--for=condition=Ready", "llmd/manual", "--timeout=60s")
    kubectl.run("scale", "llmd/manual", "--replicas=3")
    wait_for("the Deployment at 3 replicas", lambda: replicas(kubectl, "manual") == (3, 3), 30)
    kubectl.run("wait", "--for=condition=Ready", "llmd/manual", "--timeout=60s")
    assert kubectl.get("llmd", "manual")["status"]["readyReplicas"] == 3


def test_operator_mode_scales_up_at_once_and_down_after_the_delay_across_a_restart(kubectl, pod_metrics, operator):
    ns, delay = kubectl.namespace, 8
    pod_metrics.by_namespace[ns] = IDLE
    kubectl.apply(
        json.dumps(
            llmd(
                "auto",
                gpus=1,
                autoscaling={
                    "mode": "operator",
                    "minReplicas": 1,
                    "maxReplicas": 4,
                    "metric": "queue",
                    "target": 8,
                    "scaleDownDelaySeconds": delay,
                },
            )
        )
    )
    kubectl.run("wait", "--for=condition=Ready", "llmd/auto", "--timeout=60s")
    assert replicas(kubectl, "auto") == (1, 1)

    # A burst: one pod with 20 waiting requests, target 8 per replica -> ceil(20 / 8) = 3. That
    # pod alone is busy: the two new ones report idle once Ready, so the total stays 20 (were
    # they busy too, a tick before the load goes away would rightly scale up again, to 4).
    (first,) = kubectl.items("pods", "app.kubernetes.io/instance=auto")
    pod_metrics.by_pod[(ns, first["metadata"]["name"])] = BUSY
    wait_for("a scale-up to 3", lambda: replicas(kubectl, "auto") == (3, 3), 30)
    (up,) = events(kubectl, "auto", "ScaledUp")
    assert "queue 20" in up["message"] and "target 8" in up["message"] and "3 replicas" in up["message"]
    decision = kubectl.get("llmd", "auto")["status"]["autoscaler"]["lastDecision"]
    assert decision["action"] == "scale-up" and decision["desiredReplicas"] == 3
    kubectl.run("wait", "--for=condition=Ready", "llmd/auto", "--timeout=60s")

    # Load goes away; part-way through the delay the operator restarts.
    del pod_metrics.by_pod[(ns, first["metadata"]["name"])]
    low = wait_for(
        "the scale-down timer to start",
        lambda: (kubectl.get("llmd", "auto")["status"]["autoscaler"] or {}).get("lowSince"),
        30,
    )
    # Restart 5 s into the 8 s delay: a timer that restarted would scale down 13 s after `low`, not 8.
    wait_for("5 s into the delay", lambda: time.time() >= low + 5, 10, interval=0.1)
    operator.stop()
    operator.start()
    wait_for("a scale-down to 1", lambda: replicas(kubectl, "auto") == (1, 1), 60)
    # It may step down (the window's mean still holds the burst): the first step counts.
    down = min(events(kubectl, "auto", "ScaledDown"), key=lambda e: e["lastTimestamp"])
    scaled_at = dt.datetime.fromisoformat(down["lastTimestamp"].replace("Z", "+00:00")).timestamp()
    # Not before the delay (one-second timestamp resolution), and the restart did not restart the timer.
    assert scaled_at >= int(low) + delay - 1
    assert scaled_at < low + delay + 4
    assert len(events(kubectl, "auto", "ScaledUp")) == 1, "no flapping after the restart"
    assert "below 3" in down["message"] and "delay 8 s" in down["message"]


def test_an_unreachable_pod_is_unknown_not_idle(kubectl, pod_metrics):
    ns = kubectl.namespace
    pod_metrics.by_namespace[ns] = BUSY
    kubectl.apply(
        json.dumps(
            llmd(
                "half",
                gpus=1,
                replicas=2,
                autoscaling={
                    "mode": "operator",
                    "minReplicas": 1,
                    "maxReplicas": 8,
                    "target": 8,
                    "scaleDownDelaySeconds": 1,
                },
            )
        )
    )
    wait_for("a scale-up", lambda: replicas(kubectl, "half")[0] > 2, 30)
    # Every pod but one stops answering: its load is estimated from the one that does.
    pods = [p["metadata"]["name"] for p in kubectl.items("pods", "llm-operator.io/name=half")]
    for pod in pods[1:]:
        pod_metrics.by_pod[(ns, pod)] = None
    before = replicas(kubectl, "half")[0]
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert replicas(kubectl, "half")[0] >= before, "unreachable pods were counted as idle"
        time.sleep(0.5)


def test_min_replicas_0_needs_mode_operator_and_sleeps_at_zero_until_a_request_wakes_it(kubectl, pod_metrics):
    refused = kubectl.run(
        "apply",
        "-f",
        "-",
        check=False,
        input=json.dumps(llmd("nohpa", gpus=1, replicas=0, autoscaling={"mode": "hpa", "minReplicas": 0})),
    )
    assert refused.returncode != 0 and "spec.autoscaling.minReplicas" in refused.stderr
    assert (
        "minReplicas 0 needs mode operator: a HorizontalPodAutoscaler cannot scale to zero (without Kubernetes' "
        "alpha HPAScaleToZero feature gate)"
    ) in refused.stderr

    pod_metrics.by_namespace[kubectl.namespace] = IDLE
    kubectl.apply(
        json.dumps(
            llmd(
                "sleepy",
                gpus=1,
                replicas=0,
                podAnnotations={"pod-ready.stage.kwok.x-k8s.io/delay": "600s"},
                autoscaling={  # kwok leaves the woken pod unready
                    "mode": "operator",
                    "minReplicas": 0,
                    "maxReplicas": 2,
                    "scaleDownDelaySeconds": 0,
                },
            )
        )
    )
    obj = wait_for(
        "Ready=True reason ScaledToZero",
        lambda: (o := kubectl.get("llmd", "sleepy")) and condition(o, "Ready").get("reason") == "ScaledToZero" and o,
        60,
    )
    assert (
        condition(obj, "Ready")["status"] == "True"
        and "a request through the gateway wakes it" in condition(obj, "Ready")["message"]
    )
    deadline = time.monotonic() + 3  # three autoscaler ticks: it does not wake the model
    while time.monotonic() < deadline:
        assert replicas(kubectl, "sleepy") == (0, 0)
        time.sleep(0.5)

    # What the gateway does on a request: replicas 1 through the scale subresource, then its annotation.
    kubectl.run(
        "patch",
        "llmd",
        "sleepy",
        "--subresource=scale",
        "--type=merge",
        "-p",
        '{"spec": {"replicas": 1}}',
        "--field-manager=llm-operator-gateway",
    )
    at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    kubectl.run("annotate", "llmd", "sleepy", f"llm-operator.io/woken-by-request-at={at}")
    obj = wait_for(
        "the wake in status",
        lambda: (o := kubectl.get("llmd", "sleepy")) and (o.get("status") or {}).get("lastWokenByRequest") == at and o,
        30,
    )
    ready, reconciling = condition(obj, "Ready"), condition(obj, "Reconciling")
    assert ready["status"] == "False" and ready["message"].startswith(f"Woken from zero by a request at {at}; ")
    assert reconciling["status"] == "True" and reconciling["message"] == ready["message"]
    deadline = time.monotonic() + 3  # the pod not ready, no metrics: the autoscaler keeps it at 1
    while time.monotonic() < deadline:
        assert replicas(kubectl, "sleepy") == (1, 1)
        time.sleep(0.5)

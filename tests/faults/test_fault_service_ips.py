"""The Service IP range full (the plane's is a /24): the LLMDeployment whose Service gets no
IP says so in its status, with the API's refusal, and in a Warning Event; freed IPs let it
go on by itself."""

from __future__ import annotations

import json

import pytest
from faultkit import Stopwatch, reconciled

from support.cluster import condition, wait_for, wait_for_other_namespaces_to_go
from support.manifests import llmd

pytestmark = pytest.mark.usefixtures("operator")

FILLERS = 260  # more than the /24 holds, so the range is surely full


def filler(i: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"filler-{i:03d}", "labels": {"filler": "yes"}},
        "spec": {"ports": [{"port": 80}], "selector": {"none": "none"}},
    }


def test_a_service_that_gets_no_ip_is_reported_with_the_refusal_and_a_warning(kubectl):
    wait_for_other_namespaces_to_go(kubectl)
    made = kubectl.run(
        "create",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [filler(i) for i in range(FILLERS)]}),
        check=False,
    )
    assert "range is full" in made.stderr, f"the range did not fill: {made.stderr[-500:]}"
    taken = len(kubectl.items("services", "filler=yes"))
    try:
        kubectl.apply(json.dumps(llmd("no-ip", gpus=1)))
        clock = Stopwatch()

        def refused() -> dict:
            obj = kubectl.get("llmd", "no-ip")
            return obj if "range is full" in condition(obj, "Ready").get("message", "") else {}

        obj = wait_for("the refusal in the Ready condition", refused, 60, 0.2)
        reported = clock()
        ready = condition(obj, "Ready")

        def warning() -> list:
            return [
                e
                for e in kubectl.items("events")
                if e["involvedObject"].get("name") == "no-ip"
                and e["type"] == "Warning"
                and "range is full" in e.get("message", "")
            ]

        events = wait_for("a Warning Event with the refusal", warning, 30, 0.5)
        print(
            f"\nService IP range full ({taken} filler Services): reported in {reported:.1f}s as "
            f"{ready['reason']}: {ready['message']!r}; Warning Event {events[0]['reason']}: {events[0]['message']!r}"
        )
        assert ready["status"] == "False" and ready["reason"] == "ApplyRefused"
        assert kubectl.get("service", "no-ip") is None
    finally:
        kubectl.run("delete", "services", "-l", "filler=yes", "--wait=true", "--timeout=120s")
    # Never stuck: with IPs free again, the operator's own retry makes the Service.
    clock = Stopwatch()
    wait_for(
        "the LLMDeployment to be Ready once IPs are free", lambda: reconciled(kubectl.get("llmd", "no-ip")), 180, 1
    )
    print(f"Ready {clock():.1f}s after the filler Services were deleted")

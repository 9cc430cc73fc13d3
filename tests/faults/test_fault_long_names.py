"""Two LLMDeployments whose names share their first 40+ characters, the cache on, the same
model: each gets its own download Job (its name is cut to 40 characters and hashed with the
whole owner name) and both serve."""

from __future__ import annotations

import json

import pytest
from faultkit import census, reconciled

from support.cluster import bound_volume, make_storage_class, wait_for
from support.manifests import CACHED_FACTS, CACHED_MODEL, llmd

pytestmark = pytest.mark.usefixtures("operator")

STORAGE_CLASS = "fault-cache"
PREFIX = "a-model-deployment-with-a-very-long-shared-prefix"  # 49 characters


def test_names_sharing_40_characters_get_their_own_download_job_and_both_serve(cluster, kubectl):
    make_storage_class(cluster, STORAGE_CLASS)
    names = [f"{PREFIX}-blue", f"{PREFIX}-green"]
    assert names[0][:40] == names[1][:40]
    for name in names:
        # A volume bound ahead to the claim the operator will make (no provisioner here).
        bound_volume(cluster, kubectl.namespace, f"{name}-weights", STORAGE_CLASS)
        kubectl.apply(
            json.dumps(
                llmd(
                    name,
                    model={"id": CACHED_MODEL},
                    gpus=1,
                    podAnnotations={
                        "pod-complete.stage.kwok.x-k8s.io/delay": "2s",
                        "pod-complete.stage.kwok.x-k8s.io/message": json.dumps(CACHED_FACTS),
                    },
                    cache={"enabled": True, "size": "100Gi", "storageClassName": STORAGE_CLASS},
                )
            )
        )
    wait_for("both to be Ready", lambda: all(reconciled(kubectl.get("llmd", n)) for n in names), 120, 1)
    jobs = {n: [j["metadata"]["name"] for j in kubectl.items("jobs", f"app.kubernetes.io/instance={n}")] for n in names}
    print(f"\ndownload Jobs: {jobs}")
    assert all(len(j) == 1 for j in jobs.values()), jobs
    assert jobs[names[0]] != jobs[names[1]]
    for name in names:
        job = kubectl.get("job", jobs[name][0])
        assert job["metadata"]["ownerReferences"][0]["name"] == name
        assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])
    found = census(kubectl)
    assert found["duplicates"] == [] and found["orphans"] == [], found

"""The download Job's image: the spec's, else the operator's setting (`run --downloader-image`;
the chart gives the operator's own image), else the release's default. A change of the
operator's setting leaves a finished download alone."""

from __future__ import annotations

from dataclasses import replace

from decideobjects import CACHE, FAST, KNOWN, NOW, OWNER, claim, job, kinds, live_service, observed, parsed_spec, served

from llm_operator import api
from llm_operator.decide import manifests as resources
from llm_operator.decide.decision import decide

MIRROR = "registry.example.com/ml/llm-operator:1.2"
OWN = {**CACHE, "cache": {**CACHE["cache"], "downloaderImage": "team.example.com/download:3"}}


def image_of(job: dict) -> str:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    image: str = container["image"]
    return image


def test_the_download_job_runs_the_operators_image_where_the_spec_names_none():
    assert image_of(resources.desired_download_job(OWNER, parsed_spec(CACHE), MIRROR)) == MIRROR


def test_the_specs_downloader_image_wins_over_the_operators():
    assert image_of(resources.desired_download_job(OWNER, parsed_spec(OWN), MIRROR)) == "team.example.com/download:3"


def test_without_either_the_download_job_runs_the_default_image():
    assert api.DEFAULT_DOWNLOADER_IMAGE == "ghcr.io/llm-operator/llm-operator:0.1.0"
    assert image_of(resources.desired_download_job(OWNER, parsed_spec(CACHE))) == api.DEFAULT_DOWNLOADER_IMAGE
    assert image_of(resources.desired_download_job(OWNER, parsed_spec(CACHE), "")) == api.DEFAULT_DOWNLOADER_IMAGE


def test_decide_makes_the_download_job_with_the_operators_image():
    d = decide(observed(spec=CACHE, storage_classes=FAST, downloader_image=MIRROR), KNOWN, NOW)
    (made,) = [c for c in d.apply if c["kind"] == "Job"]
    assert image_of(made) == MIRROR
    spec_wins = decide(observed(spec=OWN, storage_classes=FAST, downloader_image=MIRROR), KNOWN, NOW)
    (made,) = [c for c in spec_wins.apply if c["kind"] == "Job"]
    assert image_of(made) == "team.example.com/download:3"


def test_a_finished_download_is_not_repeated_when_the_operators_image_changes():
    """An upgrade of the chart changes the operator's image, and so the Job's pod template."""
    children, pods = served(CACHE)  # its Job made with the default image, and Complete
    d = decide(
        observed(spec=CACHE, storage_classes=FAST, children=children, pods=pods, downloader_image=MIRROR), KNOWN, NOW
    )
    assert ("Job", job()["metadata"]["name"]) not in kinds(d.apply) and d.prune == ()
    # A failed one too: it is retried when deleted (then with the new image).
    failed = observed(spec=CACHE, storage_classes=FAST, children=[live_service(), claim(), job("Failed")])
    d = decide(replace(failed, downloader_image=MIRROR), KNOWN, NOW)
    assert d.apply == () and d.prune == ()


def test_a_download_still_running_is_made_again_with_the_operators_new_image():
    d = decide(
        observed(spec=CACHE, storage_classes=FAST, children=[live_service(), claim(), job()], downloader_image=MIRROR),
        KNOWN,
        NOW,
    )
    assert kinds(d.prune) == [("Job", job()["metadata"]["name"])]
    # With the image it was made with, it is left to run.
    same = decide(observed(spec=CACHE, storage_classes=FAST, children=[live_service(), claim(), job()]), KNOWN, NOW)
    assert same.prune == () and ("Job", job()["metadata"]["name"]) not in kinds(same.apply)

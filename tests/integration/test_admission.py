"""The apiserver refuses bad LLMDeployments at `kubectl apply`, naming the field (issue 2)."""

from __future__ import annotations

import json

import pytest

from manifests import invalid_cases, manifest_for

CASES = invalid_cases()


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


@pytest.mark.usefixtures("crd_installed")
def test_every_invalid_manifest_is_rejected_naming_its_field(kubectl):
    failures = []
    for case in CASES:
        proc = kubectl.run("apply", "-f", "-", input=json.dumps(manifest_for(case)), check=False)
        if proc.returncode == 0:
            failures.append(f"{case['case']}: accepted")
        elif case["field"] not in proc.stderr:
            failures.append(f"{case['case']}: message does not name {case['field']}: {proc.stderr.strip()}")
    assert kubectl.items("llmdeployments") == []
    assert not failures, "\n".join(failures)

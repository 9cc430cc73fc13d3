"""hack/publish.py's pure parts: the names it publishes under and the chart values it writes.
The build and the push themselves run in tests/realnode/test_publish.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from publish import CHART, PublishError, chart_values, check_names, image_name, parse, summary


def test_each_target_is_published_under_its_image_name():
    assert image_name("registry.example.com/ml/", "operator", "0.1.0") == "registry.example.com/ml/llm-operator:0.1.0"
    assert image_name("127.0.0.1:5000", "runtime", "v1") == "127.0.0.1:5000/llm-runtime:v1"
    assert image_name("127.0.0.1:5000", "vllm-cpu", "v1") == "127.0.0.1:5000/vllm-cpu:v1"


def test_chart_values_set_the_operator_image_and_keep_everything_else():
    values = (CHART / "values.yaml").read_text()
    written = chart_values(values, "registry.example.com/ml/llm-operator", "0.1.0")
    assert yaml.safe_load(written) == {
        **yaml.safe_load(values),
        "image": {"repository": "registry.example.com/ml/llm-operator", "tag": "0.1.0", "pullPolicy": "IfNotPresent"},
    }
    # Only the two lines change: the comments a user reads in `helm show values` stay.
    changed = [(a, b) for a, b in zip(values.splitlines(), written.splitlines()) if a != b]
    assert changed == [
        ("  repository: ghcr.io/llm-operator/llm-operator", '  repository: "registry.example.com/ml/llm-operator"'),
        ('  tag: ""', '  tag: "0.1.0"'),
    ]


def test_chart_values_refuse_a_values_file_without_the_image_keys():
    with pytest.raises(PublishError, match=r"no image\.tag"):
        chart_values("image:\n  repository: x\nother:\n  tag: y\n", "r", "t")


@pytest.mark.parametrize(
    "registry, tag, message",
    [
        ("https://registry.example.com", "0.1.0", "is not a registry host"),
        ("registry.example.com/ML", "0.1.0", "is not a registry host"),
        ("registry.example.com", "", "is not an image tag"),
        ("registry.example.com", "v1+build", "is not an image tag"),
    ],
)
def test_names_that_would_make_a_bad_image_reference_are_refused(registry, tag, message):
    with pytest.raises(PublishError, match=message):
        check_names(registry, tag)


def test_usual_registries_and_tags_are_accepted():
    for registry in ("registry.example.com", "registry.example.com:5000/team/ml", "127.0.0.1:5000", "ghcr.io/org"):
        check_names(registry, "0.1.0-rc.1")


def test_the_command_line_defaults_build_every_target_without_pushing():
    pub = parse(["--registry", "registry.example.com/ml", "--tag", "0.1.0"])
    assert (pub.targets, pub.push, pub.plain_http, pub.pull, pub.storage) == (
        ("operator", "runtime", "vllm-cpu"),
        False,
        False,
        "missing",
        None,
    )
    pub = parse(["--registry", "r.example", "--tag", "t", "--targets", "operator", "--build-arg", "TGI_IMAGE=x=y"])
    assert pub.targets == ("operator",) and pub.build_args == {"TGI_IMAGE": "x=y"}


def test_the_summary_names_each_image_its_digest_and_how_to_install_the_chart():
    report = {
        "images": {
            "operator": {
                "image": "127.0.0.1:5000/llm-operator:0.1.0",
                "id": "sha256:aaa",
                "digest": "sha256:bbb",
            },
            "runtime": {"image": "127.0.0.1:5000/llm-runtime:0.1.0", "id": "sha256:ccc"},
        },
        "chart": {
            "package": str(Path("/dist/llm-operator-0.1.0.tgz")),
            "oci": "oci://127.0.0.1:5000/charts/llm-operator",
        },
    }
    assert summary(report).splitlines() == [
        "operator: 127.0.0.1:5000/llm-operator:0.1.0 (image ID sha256:aaa), pushed as 127.0.0.1:5000/llm-operator@sha256:bbb",
        "runtime: 127.0.0.1:5000/llm-runtime:0.1.0 (image ID sha256:ccc), not pushed",
        "chart: /dist/llm-operator-0.1.0.tgz, pushed to oci://127.0.0.1:5000/charts/llm-operator",
        "install: helm install llm-operator oci://127.0.0.1:5000/charts/llm-operator --version 0.1.0 "
        "-n llm-system --create-namespace",
    ]

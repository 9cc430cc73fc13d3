"""The real-engine farm's own rules (tests/support/realengine.py): what it changes in a pod's argv and env."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.realengine import FLAGS_ONLY_IN_0_33, OVERRIDES, engine_argv, engine_env, expand, map_paths

VENV = Path("/venv")


def test_only_the_host_changes_and_enforce_eager_is_added():
    container = {
        "name": "engine",
        "command": ["vllm", "serve"],
        "args": ["org/m", "--revision", "abc", "--host", "0.0.0.0", "--port", "8000", "--max-num-seqs", "2"],
    }
    assert engine_argv(container, VENV, "127.0.1.5") == [
        "/venv/bin/vllm",
        "serve",
        "org/m",
        "--revision",
        "abc",
        "--host",
        "127.0.1.5",
        "--port",
        "8000",
        "--max-num-seqs",
        "2",
        "--enforce-eager",
    ]
    container["args"] = ["org/m", "--host=0.0.0.0", "--enforce-eager"]
    assert engine_argv(container, VENV, "127.0.1.5") == [
        "/venv/bin/vllm",
        "serve",
        "org/m",
        "--host=127.0.1.5",
        "--enforce-eager",
    ]


def test_a_container_that_is_not_vllm_serve_or_names_a_newer_flag_is_refused():
    with pytest.raises(ValueError, match="not `vllm serve`"):
        engine_argv({"name": "engine", "command": ["text-generation-launcher"], "args": []}, VENV, "127.0.0.2")
    with pytest.raises(ValueError, match="--monokernel is a vLLM 0.33.0 flag"):
        engine_argv(
            {"name": "engine", "command": ["vllm", "serve"], "args": ["m", "--monokernel=x"]}, VENV, "127.0.0.2"
        )
    assert "--monokernel" in FLAGS_ONLY_IN_0_33


def test_paths_under_a_mount_map_to_its_directory_and_nothing_else_does():
    mounts = {"/data": Path("/tmp/cache"), "/data/extra": Path("/tmp/extra")}
    assert map_paths("/data", mounts) == "/tmp/cache"
    assert map_paths("/data/hub/models--a", mounts) == "/tmp/cache/hub/models--a"
    assert map_paths("/data/extra/x", mounts) == "/tmp/extra/x"  # the longest mount wins
    assert map_paths("name=/data/hub/x", mounts) == "name=/tmp/cache/hub/x"  # --lora-modules name=path
    assert map_paths("/database", mounts) == "/database"
    assert map_paths("org/data", mounts) == "org/data"


def test_kubernetes_variable_expansion():
    env = {"POD_IP": "127.0.0.9"}
    assert expand("--host=$(POD_IP)", env) == "--host=127.0.0.9"
    assert expand("$(MISSING) $$(POD_IP)", env) == "$(MISSING) $(POD_IP)"


def test_every_env_override_is_listed():
    listed = " ".join(o.change for o in OVERRIDES)
    assert all(name in listed for name in engine_env("127.0.0.3")), listed

"""download.py against tests/support/hub.py, a local Hub stand-in serving a small generated model."""

from __future__ import annotations

import json
import random
import struct
import threading
import time
from pathlib import Path

import pytest
from huggingface_hub import try_to_load_from_cache

from llm_operator.facts.hub import facts_from_config
from llm_runtime import cli
from llm_runtime.download import (
    CorruptDownload,
    DownloadError,
    DownloadRefused,
    DownloadStalled,
    download,
    download_adapter,
    facts_from_cache,
    human_bytes,
    is_complete,
    marker_path,
    progress_line,
    read_marker,
    safetensors_parameter_counts,
    select_adapter_files,
    select_model_files,
    termination_message,
)
from support.hub import HubServer

MODEL = "acme/tiny-llama"
ADAPTER = "acme/tiny-support-lora"
SHARD_1 = "model-00001-of-00002.safetensors"
SHARD_2 = "model-00002-of-00002.safetensors"
CHUNK = 10 * 1024 * 1024  # huggingface_hub's http_get writes in chunks of this size

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "num_hidden_layers": 2,
    "vocab_size": 4096,
    "max_position_embeddings": 2048,
    "torch_dtype": "bfloat16",
    "tie_word_embeddings": False,
}


def safetensors_file(tensors: dict[str, tuple[str, list[int]]], seed: int) -> bytes:
    """A real safetensors file: header plus (random) data of the declared sizes."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dtype, shape) in tensors.items():
        size = {"BF16": 2, "F32": 4}[dtype]
        for dimension in shape:
            size *= dimension
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + random.Random(seed).randbytes(offset)


def tiny_model_repo() -> dict[str, bytes]:
    shard_1 = safetensors_file(
        {"model.embed_tokens.weight": ("BF16", [4096, 256]), "model.layers.all": ("BF16", [2, 3_000_000])}, seed=1
    )  # 13.4 MiB
    shard_2 = safetensors_file({"lm_head.weight": ("BF16", [4096, 256]), "model.norm.weight": ("F32", [256])}, seed=2)
    index = {
        "metadata": {"total_size": 16_195_328},
        "weight_map": {
            "model.embed_tokens.weight": SHARD_1,
            "model.layers.all": SHARD_1,
            "lm_head.weight": SHARD_2,
            "model.norm.weight": SHARD_2,
        },
    }
    return {
        "config.json": json.dumps(CONFIG).encode(),
        "generation_config.json": b'{"bos_token_id": 1, "eos_token_id": 2}',
        "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}',
        "tokenizer_config.json": b'{"model_max_length": 2048}',
        "special_tokens_map.json": b'{"bos_token": "<s>"}',
        "model.safetensors.index.json": json.dumps(index).encode(),
        SHARD_1: shard_1,
        SHARD_2: shard_2,
        # Not for TGI: the same weights for mistral-inference, a README, another format's folder.
        "consolidated.safetensors": safetensors_file({"tok_embeddings.weight": ("BF16", [4096, 256])}, seed=3),
        "README.md": b"# tiny llama\n",
        "original/params.json": b'{"dim": 256}',
    }


def tiny_adapter_repo() -> dict[str, bytes]:
    return {
        "adapter_config.json": json.dumps({"base_model_name_or_path": MODEL, "peft_type": "LORA", "r": 8}).encode(),
        "adapter_model.safetensors": safetensors_file(
            {"lora_A": ("BF16", [8, 256]), "lora_B": ("BF16", [256, 8])}, seed=4
        ),
        "README.md": b"# a LoRA\n",
    }


# 4096*256 (embeddings) + 2*3,000,000 (layers) + 4096*256 (lm_head) + 256 (norm)
PARAMETERS = 8_097_408
SELECTED = sorted(
    [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "model.safetensors.index.json",
        SHARD_1,
        SHARD_2,
    ]
)


@pytest.fixture
def hub():
    server = HubServer(
        {MODEL: tiny_model_repo(), ADAPTER: tiny_adapter_repo(), "acme/gated": tiny_model_repo()},
        gated={"acme/gated"},
        tokens={"hf_good"},
    )
    yield server
    server.close()


def fetched(hub: HubServer, repo: str = MODEL) -> list[str]:
    prefix = f"/{repo}/resolve/"
    return sorted(
        path.split("/", 5)[5] for method, path, _ in hub.requests if path.startswith(prefix) and method == "GET"
    )


def blobs(cache: Path, repo: str = MODEL) -> Path:
    return cache / "hub" / ("models--" + repo.replace("/", "--")) / "blobs"


def quiet(_line: str) -> None:
    pass


def abandoned_workers_finish(hub: HubServer, timeout: float = 10) -> bool:
    """Close the stand-in (ending the held connection) and wait for the stalled download's
    worker threads: they must stop at once rather than retry against a dead Hub."""
    hub.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [t for t in threading.enumerate() if t.name.startswith("download-")]:
            return True
        time.sleep(0.05)
    return False


# --- a complete download -------------------------------------------------------------------


def test_complete_download_lays_out_the_hub_cache(hub, tmp_path):
    result = download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    commit = hub.commit(MODEL)
    assert result.commit == commit
    assert [f.name for f in result.files] == SELECTED
    assert fetched(hub) == SELECTED  # not consolidated.safetensors, README.md or original/
    repo = tmp_path / "hub" / "models--acme--tiny-llama"
    assert (repo / "refs" / "main").read_text() == commit
    assert result.snapshot_dir == repo / "snapshots" / commit
    for name, content in tiny_model_repo().items():
        if name in SELECTED:
            assert (result.snapshot_dir / name).read_bytes() == content
            assert (result.snapshot_dir / name).is_symlink()
    assert result.downloaded_bytes == sum(len(c) for n, c in tiny_model_repo().items() if n in SELECTED)
    assert not list(blobs(tmp_path).glob("*.incomplete"))


def test_huggingface_hub_finds_the_files_offline(hub, tmp_path):
    # transformers and TGI's Python side look files up like this with HF_HUB_OFFLINE=1.
    result = download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    for revision in ("main", result.commit):
        found = try_to_load_from_cache(MODEL, "config.json", cache_dir=tmp_path / "hub", revision=revision)
        assert found is not None and json.loads(Path(found).read_text()) == CONFIG


def test_facts_come_from_the_downloaded_config_and_headers(hub, tmp_path):
    result = download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    assert result.facts == facts_from_config(CONFIG, PARAMETERS, model_id=MODEL, revision="main")
    assert result.facts.parameter_count_estimated is False
    assert facts_from_cache(tmp_path, MODEL, "main") == result.facts


def test_a_complete_cache_is_not_fetched_again(hub, tmp_path):
    download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    hub.reset_counts()
    lines = []
    again = download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=lines.append)
    assert hub.requests == []
    assert again.downloaded_bytes == 0
    assert lines == [f"{MODEL}@main is already complete in {tmp_path} (commit {hub.commit(MODEL)[:12]})."]


def test_pinned_commit(hub, tmp_path):
    commit = hub.commit(MODEL)
    result = download(MODEL, commit, tmp_path, endpoint=hub.endpoint, progress=quiet)
    assert result.commit == commit
    # Written even for a commit: TGI's router resolves every revision through refs/.
    assert (tmp_path / "hub" / "models--acme--tiny-llama" / "refs" / commit).read_text() == commit
    assert is_complete(tmp_path, MODEL, commit)


# --- the completion marker -----------------------------------------------------------------


def test_completion_marker_is_written_last(hub, tmp_path):
    result = download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    marker = marker_path(tmp_path, MODEL, "main")
    assert marker == tmp_path / "llm-operator" / "acme--tiny-llama" / "main" / "COMPLETE"
    written = marker.stat().st_mtime_ns
    everything_else = [p for p in (tmp_path / "hub").rglob("*") if p.is_file() and not p.is_symlink()]
    assert everything_else and all(p.stat().st_mtime_ns <= written for p in everything_else)
    assert [p.name for p in marker.parent.iterdir()] == ["COMPLETE"]  # no temporary file left
    content = read_marker(tmp_path, MODEL, "main")
    assert content["commit"] == result.commit and content["repoId"] == MODEL and content["revision"] == "main"
    by_name = {f["name"]: f for f in content["files"]}
    assert sorted(by_name) == SELECTED
    assert by_name[SHARD_2]["size"] == len(tiny_model_repo()[SHARD_2])
    assert by_name[SHARD_2]["sha256"] == result.files[SELECTED.index(SHARD_2)].sha256


def test_a_missing_file_makes_the_cache_incomplete(hub, tmp_path):
    result = download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    assert is_complete(tmp_path, MODEL, "main")
    (result.snapshot_dir / SHARD_2).unlink()
    assert not is_complete(tmp_path, MODEL, "main")
    assert not is_complete(tmp_path, MODEL, "other-branch")


def test_a_revision_with_a_slash_gets_one_directory(tmp_path):
    assert (
        marker_path(tmp_path, MODEL, "refs/pr/1")
        == tmp_path / "llm-operator" / "acme--tiny-llama" / "refs%2Fpr%2F1" / "COMPLETE"
    )


# --- interrupted, corrupt, stalled ---------------------------------------------------------


def test_an_interrupted_download_resumes_where_it_stopped(hub, tmp_path):
    # The first run is cut after 11 MiB of the big shard and the Hub then fails it: the process
    # gives up, as a Job pod killed half-way would. huggingface_hub wrote one 10 MiB chunk.
    hub.cut_after(MODEL, SHARD_1, 11 * 1024 * 1024, then_fail=True)
    with pytest.raises(DownloadError) as raised:
        download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    assert raised.value.permanent is False
    (partial,) = blobs(tmp_path).glob("*.incomplete")
    assert partial.stat().st_size == CHUNK
    assert marker_path(tmp_path, MODEL, "main").exists() is False

    hub.clear_faults()
    hub.reset_counts()
    result = download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    size = len(tiny_model_repo()[SHARD_1])
    assert hub.served[(MODEL, SHARD_1)] == size - CHUNK  # only the rest
    assert [r for m, p, r in hub.requests if p.endswith(SHARD_1)] == [f"bytes={CHUNK}-"]
    assert (result.snapshot_dir / SHARD_1).read_bytes() == tiny_model_repo()[SHARD_1]
    assert sum(hub.served.values()) == result.downloaded_bytes  # nothing else fetched twice
    assert is_complete(tmp_path, MODEL, "main")


def test_a_cut_connection_is_resumed_within_one_run(hub, tmp_path):
    hub.cut_after(MODEL, SHARD_1, 11 * 1024 * 1024)  # every response for the shard is cut
    result = download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    assert [r for m, p, r in hub.requests if p.endswith(SHARD_1)] == [None, f"bytes={CHUNK}-"]
    assert (result.snapshot_dir / SHARD_1).read_bytes() == tiny_model_repo()[SHARD_1]


def test_a_corrupt_file_is_detected_and_removed(hub, tmp_path):
    hub.corrupt(MODEL, SHARD_2, offset=5000)
    with pytest.raises(CorruptDownload) as raised:
        download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    message = str(raised.value)
    assert message.startswith(f"{MODEL}: {SHARD_2} arrived corrupt (its sha256 is ")
    assert message.endswith("; it was removed, so the next attempt downloads it again.")
    sha256 = read_sha256(hub, SHARD_2)
    assert not (blobs(tmp_path) / sha256).exists() and not (blobs(tmp_path) / f"{sha256}.incomplete").exists()
    assert not marker_path(tmp_path, MODEL, "main").exists()

    hub.clear_faults()
    hub.reset_counts()
    result = download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    assert hub.served[(MODEL, SHARD_2)] == len(tiny_model_repo()[SHARD_2])  # fetched again, whole
    assert (result.snapshot_dir / SHARD_2).read_bytes() == tiny_model_repo()[SHARD_2]


def read_sha256(hub: HubServer, name: str) -> str:
    import hashlib

    return hashlib.sha256(hub.repos[MODEL][name]).hexdigest()


def test_a_corrupt_small_file_fails_its_git_object_id(hub, tmp_path):
    hub.corrupt(MODEL, "config.json", offset=0)
    with pytest.raises(CorruptDownload, match=r"^acme/tiny-llama: config.json arrived corrupt \(its git object id is "):
        download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)


def test_a_stall_is_detected_within_the_timeout(hub, tmp_path):
    hub.stall(MODEL, SHARD_1, after=4096)
    started = time.monotonic()
    with pytest.raises(DownloadStalled) as raised:
        download(MODEL, "main", tmp_path, endpoint=hub.endpoint, stall_timeout_s=2, progress=quiet)
    elapsed = time.monotonic() - started
    assert 2 <= elapsed < 6
    assert str(raised.value).startswith(f"No bytes of {MODEL}@main arrived for 2 s (waiting on {SHARD_1};")
    assert str(raised.value).endswith("The partial files are kept and the next attempt resumes them.")
    assert raised.value.permanent is False
    assert not marker_path(tmp_path, MODEL, "main").exists()
    assert abandoned_workers_finish(hub)


# --- refusals ------------------------------------------------------------------------------


def test_gated_repository_without_a_token(hub, tmp_path):
    with pytest.raises(DownloadRefused) as raised:
        download("acme/gated", "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    assert raised.value.permanent is True
    assert str(raised.value) == (
        "acme/gated is gated on the Hugging Face Hub: accept its licence on the model page "
        "and give the download a token (HF_TOKEN) of an account that has access."
    )


def test_gated_repository_with_a_token(hub, tmp_path):
    result = download("acme/gated", "main", tmp_path, token="hf_good", endpoint=hub.endpoint, progress=quiet)
    assert is_complete(tmp_path, "acme/gated", "main") and result.facts.parameter_count == PARAMETERS


def test_unknown_repository_and_revision(hub, tmp_path):
    with pytest.raises(DownloadRefused, match=r"^acme/nothing was not found on the Hugging Face Hub \(http://127"):
        download("acme/nothing", "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    with pytest.raises(DownloadRefused) as raised:
        download(MODEL, "v9", tmp_path, endpoint=hub.endpoint, progress=quiet)
    assert str(raised.value) == (
        "Revision 'v9' of acme/tiny-llama does not exist on the Hugging Face Hub: "
        "pin an existing branch, tag or commit."
    )


# --- adapters ------------------------------------------------------------------------------


def test_adapter_into_the_same_cache(hub, tmp_path):
    result = download_adapter(ADAPTER, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    assert [f.name for f in result.files] == ["adapter_config.json", "adapter_model.safetensors"]
    assert result.snapshot_dir == tmp_path / "hub" / "models--acme--tiny-support-lora" / "snapshots" / hub.commit(
        ADAPTER
    )
    assert is_complete(tmp_path, ADAPTER, "main")


def test_a_model_is_not_an_adapter(hub, tmp_path):
    with pytest.raises(DownloadRefused, match=r"^acme/tiny-llama@main is not a LoRA adapter TGI can load"):
        download_adapter(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)


# --- the CLI and the termination message ---------------------------------------------------


def test_cli_download_writes_the_facts_to_the_termination_message(hub, tmp_path, monkeypatch, capsys):
    message_file = tmp_path / "termination-log"
    monkeypatch.setenv("TERMINATION_MESSAGE_PATH", str(message_file))
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("ADAPTERS", f"support={ADAPTER}@main")
    code = cli.main(["download", "--model-id", MODEL, "--cache-dir", str(tmp_path / "cache"), "--stall-timeout", "5"])
    assert code == 0
    message = json.loads(message_file.read_text())
    assert message == {
        "modelId": MODEL,
        "revision": "main",
        "numLayers": 2,
        "hiddenSize": 256,
        "numAttentionHeads": 8,
        "numKeyValueHeads": 4,
        "headDim": 32,
        "vocabSize": 4096,
        "maxPositionEmbeddings": 2048,
        "torchDtype": "bfloat16",
        "intermediateSize": 512,
        "numExperts": 0,
        "numExpertsPerTok": 0,
        "parameterCount": PARAMETERS,
        "parameterCountEstimated": False,
        "tieWordEmbeddings": False,
        "modelType": "llama",
        "quantizationConfig": None,
        "commit": hub.commit(MODEL),
        "adapters": {"support": hub.commit(ADAPTER)},
    }
    assert len(message_file.read_bytes()) <= 4096
    assert capsys.readouterr().out.splitlines()[-1] == message_file.read_text()
    assert is_complete(tmp_path / "cache", ADAPTER, "main")


def test_cli_download_failure_reports_why(hub, tmp_path, monkeypatch):
    message_file = tmp_path / "termination-log"
    monkeypatch.setenv("TERMINATION_MESSAGE_PATH", str(message_file))
    code = cli.main(["download", "--model-id", "acme/gated", "--cache-dir", str(tmp_path), "--endpoint", hub.endpoint])
    assert code == 4  # permanent: the Job's podFailurePolicy can stop retrying
    assert json.loads(message_file.read_text()) == {
        "error": "acme/gated is gated on the Hugging Face Hub: accept its licence on the model page and give the "
        "download a token (HF_TOKEN) of an account that has access.",
        "reason": "Refused",
        "permanent": True,
    }


def test_cli_download_stall_exits_for_a_retry(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("TERMINATION_MESSAGE_PATH", str(tmp_path / "termination-log"))
    hub.stall(MODEL, SHARD_1)
    code = cli.main(
        [
            "download",
            "--model-id",
            MODEL,
            "--cache-dir",
            str(tmp_path),
            "--endpoint",
            hub.endpoint,
            "--stall-timeout",
            "1",
        ]
    )
    assert code == 1
    assert json.loads((tmp_path / "termination-log").read_text())["reason"] == "Stalled"
    assert abandoned_workers_finish(hub)


def test_cli_inspect(hub, tmp_path, capsys):
    download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=quiet)
    capsys.readouterr()
    assert cli.main(["inspect", "--model-id", MODEL, "--cache-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["parameterCount"] == PARAMETERS
    assert cli.main(["inspect", "--model-id", "acme/other", "--cache-dir", str(tmp_path)]) == 1


def test_termination_message_stays_under_4096_bytes():
    big = {
        "quant_method": "compressed-tensors",
        "format": "float-quantized",
        "ignore": [f"model.layers.{i}.mlp.gate" for i in range(200)],
        "config_groups": {"group_0": {"targets": ["Linear"]}},
    }
    facts = facts_from_config({**CONFIG, "quantization_config": big}, PARAMETERS, model_id=MODEL)
    message = termination_message(facts, "c" * 40)
    assert len(message.encode()) <= 4096
    assert json.loads(message)["quantizationConfig"] == {
        "quant_method": "compressed-tensors",
        "format": "float-quantized",
    }
    small = facts_from_config({**CONFIG, "quantization_config": {"quant_method": "awq", "bits": 4}}, PARAMETERS)
    assert json.loads(termination_message(small, "c" * 40))["quantizationConfig"] == {"quant_method": "awq", "bits": 4}


# --- pure pieces ---------------------------------------------------------------------------


def test_progress_lines():
    assert (
        progress_line("model.safetensors", 1_288_490_189, 5_261_334_938, 89_128_960)
        == "model.safetensors: 1.2 GiB of 4.9 GiB (24%), 85 MiB/s"
    )
    assert progress_line("config.json", 512, 2048, None) == "config.json: 512 B of 2 KiB (25%)"
    assert human_bytes(15 * 1024**3) == "15 GiB"


def test_progress_is_rate_limited(hub, tmp_path):
    lines = []
    download(MODEL, "main", tmp_path, endpoint=hub.endpoint, progress=lines.append, progress_interval_s=3600)
    assert len(lines) == 2
    assert lines[0] == f"{MODEL}@main (commit {hub.commit(MODEL)[:12]}): 8 files, 15 MiB, into {tmp_path}"
    assert lines[1].startswith(f"{MODEL}@main: 8 files, 15 MiB, 15 MiB downloaded in ")
    assert lines[1].endswith(", verified")


def test_select_model_files_prefers_the_indexed_safetensors():
    names = [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "consolidated.safetensors",
        "params.json",
        "tokenizer.model",
        "tokenizer.json",
        "tokenizer_config.json",
        "pytorch_model.bin",
        "original/consolidated.00.pth",
        "README.md",
    ]
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    assert select_model_files(names, index) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer.model",
        "tokenizer_config.json",
    ]
    # Without the index: the model* shards, not consolidated.safetensors.
    assert select_model_files([n for n in names if n != "model.safetensors.index.json"]) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "tokenizer.json",
        "tokenizer.model",
        "tokenizer_config.json",
    ]


def test_select_model_files_falls_back_to_bin_without_training_files():
    names = [
        "config.json",
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json",
        "training_args.bin",
        "vocab.json",
        "merges.txt",
        "adapter_config.json",
    ]
    assert select_model_files(names) == [
        "adapter_config.json",
        "config.json",
        "merges.txt",
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json",
        "vocab.json",
    ]
    assert select_model_files(names, allow_patterns=["*.json"]) == [
        "adapter_config.json",
        "config.json",
        "pytorch_model.bin.index.json",
        "vocab.json",
    ]


def test_select_adapter_files():
    assert select_adapter_files(
        [
            "adapter_config.json",
            "adapter_model.safetensors",
            "adapter_model.bin",
            "tokenizer.json",
            "README.md",
            "checkpoint-100/adapter_model.safetensors",
        ]
    ) == ["adapter_config.json", "adapter_model.safetensors", "tokenizer.json"]


def test_safetensors_parameter_counts(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(safetensors_file({"a": ("BF16", [3, 4]), "b": ("F32", [5]), "c": ("BF16", [2])}, seed=0))
    assert safetensors_parameter_counts(path) == {"BF16": 14, "F32": 5}

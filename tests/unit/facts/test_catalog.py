"""The catalog of model facts: every shipped entry parses like a Hub config.json and gets a
verdict on every GPU type; a platform team's entries are checked field by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llm_operator.facts import catalog
from llm_operator.facts.hub import estimate_parameter_count, facts_from_config
from llm_operator.planning import planner
from llm_operator.planning.gpus import GPU_TYPES

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "operator" / "llm_operator" / "facts" / "data" / "catalog"
SHIPPED = [entry for path in sorted(DATA.glob("*.json")) for entry in json.loads(path.read_text())["models"]]
IDS = [entry["id"] for entry in SHIPPED]

LLAMA_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "torch_dtype": "bfloat16",
    "tie_word_embeddings": False,
}


def test_the_catalog_ships_at_least_twenty_models_and_loads_without_a_problem():
    built_in = catalog.builtin()
    assert built_in.problems == ()
    assert len(built_in) == len(SHIPPED) >= 23
    assert len(set(i.lower() for i in IDS)) == len(IDS), "an id appears twice"


@pytest.mark.parametrize("entry", SHIPPED, ids=IDS)
def test_every_entry_states_what_the_hub_parser_reads_from_its_config(entry):
    # The same function the Hub path and the download Job use.
    parsed = facts_from_config(
        entry["config"], entry["parameterCount"], model_id=entry["id"], revision=entry["revision"]
    )
    assert entry["facts"] == parsed.to_dict()
    assert catalog.builtin().entry(entry["id"]).facts == parsed


@pytest.mark.parametrize("entry", SHIPPED, ids=IDS)
def test_every_entry_says_where_its_numbers_came_from(entry):
    sources = entry["sources"]
    assert sources["config"] and sources["revision"] and sources["parameterCount"]
    revision = entry["revision"]
    assert revision == "main" or (len(revision) == 40 and all(c in "0123456789abcdef" for c in revision))
    assert (revision == "main") == sources["revision"].startswith("no commit found")
    assert (entry["parameterCount"] is None) == sources["parameterCount"].startswith("no exact count")


@pytest.mark.parametrize("entry", [e for e in SHIPPED if e["parameterCount"]], ids=lambda e: e["id"])
def test_a_sourced_parameter_count_equals_the_count_from_the_architecture(entry):
    # Two independent roads to one number: a wrong copy of config.json or a misquoted
    # count would part them.
    assert estimate_parameter_count(entry["config"]) == entry["parameterCount"]


@pytest.mark.parametrize("entry", SHIPPED, ids=IDS)
def test_the_planner_gives_every_entry_a_verdict_on_every_gpu_type(entry):
    facts = catalog.builtin().entry(entry["id"]).facts
    for gpu in GPU_TYPES:
        result = planner.plan(planner.PlanRequest(facts=facts, quantization="none", gpu_type=gpu))
        assert result.status in (planner.FITS, planner.DOES_NOT_FIT), (gpu, result.reason)
        assert result.reason


def test_the_examples_models_are_in_the_catalog():
    for path in sorted((REPO / "examples").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        assert catalog.builtin().entry(doc["spec"]["model"]["id"]) is not None, path.name


def test_an_unpinned_spec_takes_the_entry_and_a_pinned_one_is_told_when_it_differs():
    built_in = catalog.builtin()
    exact = built_in.match("meta-llama/Llama-3.1-8B-Instruct", "0e9e39f249a16976918f6564b8830bc894c89659")
    assert exact.note == "" and exact.facts.revision == "0e9e39f249a16976918f6564b8830bc894c89659"
    assert built_in.match("meta-llama/Llama-3.1-8B-Instruct", "0e9e39f").note == ""
    unpinned = built_in.match("META-LLAMA/llama-3.1-8b-instruct", "main")
    assert unpinned.note == "" and (unpinned.facts.model_id, unpinned.facts.revision) == (
        "META-LLAMA/llama-3.1-8b-instruct",
        "main",
    )
    other = built_in.match("meta-llama/Llama-3.1-8B-Instruct", "v2")
    assert other.facts.num_layers == 32
    assert other.note.startswith("The catalog's facts are for revision 0e9e39f, not v2 (spec.model.revision)")
    assert built_in.match("org/not-there", "main") is None


def _extra(tmp_path, items) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(items))
    return path


def test_a_bad_extra_entry_is_reported_with_its_name_and_field_and_the_others_load(tmp_path, caplog):
    path = _extra(
        tmp_path,
        [
            {"id": "acme/good-8b", "revision": "main", "config": LLAMA_8B_CONFIG},
            {"id": "acme/bad-8b", "config": {**LLAMA_8B_CONFIG, "num_hidden_layers": "thirty-two"}},
            {"id": "acme/no-config"},
            "just a string",
        ],
    )
    with caplog.at_level("WARNING"):
        loaded = catalog.load([path])
    assert loaded.entry("acme/good-8b").facts.num_layers == 32
    assert loaded.entry("acme/bad-8b") is None and loaded.entry("acme/no-config") is None
    assert len(loaded) == len(catalog.builtin()) + 1
    assert [p for _, p in loaded.problems] == [
        f"Catalog {path}, entry 2 (acme/bad-8b): config.num_hidden_layers must be an integer, got 'thirty-two'; "
        "the entry is left out.",
        f"Catalog {path}, entry 3 (acme/no-config): config must be an object (the model's config.json), got None; "
        "the entry is left out.",
        f"Catalog {path}, entry 4: must be an object with id and config, got 'just a string'; the entry is left out.",
    ]
    # Reported once each, at load.
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [p for _, p in loaded.problems]
    assert "config.num_hidden_layers must be an integer" in loaded.problem_for("ACME/bad-8b")


@pytest.mark.parametrize(
    "raw, problem",
    [
        (
            {"id": "no-slash", "config": LLAMA_8B_CONFIG},
            "id must be a Hugging Face model id such as org/name, got 'no-slash'",
        ),
        ({"id": "a/b", "revision": 3, "config": LLAMA_8B_CONFIG}, "revision must be a branch, tag or commit, got 3"),
        ({"id": "a/b", "parameterCount": 0, "config": LLAMA_8B_CONFIG}, "parameterCount must be a positive integer"),
        ({"id": "a/b", "parameterCount": True, "config": LLAMA_8B_CONFIG}, "parameterCount must be a positive integer"),
        (
            {"id": "a/b", "config": {**LLAMA_8B_CONFIG, "tie_word_embeddings": "no"}},
            "config.tie_word_embeddings must be true or false, got 'no'",
        ),
        (
            {"id": "a/b", "config": {**LLAMA_8B_CONFIG, "hidden_size": -1}},
            "config.hidden_size must not be negative, got -1",
        ),
        (
            {"id": "a/b", "config": {"model_type": "gemma3", "text_config": {"hidden_size": 2.5}}},
            "config.text_config.hidden_size must be an integer, got 2.5",
        ),
        ({"id": "a/b", "config": {"model_type": "llama"}}, "config: config.json has none of hidden_size"),
        (
            {"id": "a/b", "config": LLAMA_8B_CONFIG, "facts": {"numLayers": 31}},
            "facts.numLayers says 31, but config gives 32",
        ),
        ({"id": "a/b", "config": LLAMA_8B_CONFIG, "facts": {"layers": 32}}, "facts.layers is not a fact"),
        ({"id": "a/b", "config": LLAMA_8B_CONFIG, "gpus": 2}, "unknown field gpus"),
    ],
)
def test_each_bad_field_is_named(raw, problem):
    with pytest.raises(catalog.CatalogEntryError) as err:
        catalog.parse_entry(raw, "test")
    assert str(err.value).startswith(problem)


def test_an_extra_entry_replaces_a_shipped_one_of_the_same_id(tmp_path):
    path = _extra(
        tmp_path,
        {
            "models": [
                {
                    "id": "meta-llama/Llama-3.1-8B-Instruct",
                    "revision": "mine",
                    "config": {**LLAMA_8B_CONFIG, "num_hidden_layers": 40},
                    "parameterCount": 9_000_000_000,
                }
            ]
        },
    )
    loaded = catalog.load([path])
    entry = loaded.entry("meta-llama/Llama-3.1-8B-Instruct")
    assert (entry.revision, entry.facts.num_layers, entry.facts.parameter_count, entry.origin) == (
        "mine",
        40,
        9_000_000_000,
        str(path),
    )
    assert loaded.problems == ()


@pytest.mark.parametrize(
    "text, problem",
    [
        ("models: [", "not valid YAML"),
        ("42", "expected a list of models, got int"),
    ],
)
def test_a_file_that_is_not_a_list_of_entries_is_one_problem(tmp_path, text, problem):
    path = tmp_path / "models.yaml"
    path.write_text(text)
    loaded = catalog.load([path])
    assert len(loaded) == len(catalog.builtin())
    assert len(loaded.problems) == 1 and problem in loaded.problems[0][1]


def test_a_missing_file_is_one_problem_not_a_crash(tmp_path):
    loaded = catalog.load([tmp_path / "absent.yaml"])
    assert loaded.problems == (
        (
            "",
            f"Catalog {tmp_path / 'absent.yaml'}: cannot be read (No such file or directory); "
            "no entry of it was loaded.",
        ),
    )

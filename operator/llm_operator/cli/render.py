"""`llm-operator render`: the operator's own decide() on a manifest, with no cluster.

It prints the children the operator would apply and, as comments, the status it would
write. What the operator would learn from the cluster is assumed, and each assumption
is said in a comment: the GPU type of the nodes (`--gpu`), that a weight cache's claim is
bound and its download Job succeeded, and the model's facts when neither `--config` nor
`--hub` gives them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import replace
from typing import Any, TextIO

import yaml

from llm_operator import api
from llm_operator.decide.decision import Decision, Lookups, decide, with_applied
from llm_operator.decide.manifests import Owner, desired_cache_claim, desired_download_job
from llm_operator.decide.observed import Observed, trim_child
from llm_operator.engines import ENGINE_NAMES
from llm_operator.facts.catalog import load
from llm_operator.facts.hub import ModelFactsUnavailable, adapter_config_from_hub, facts_from_hub, facts_from_local
from llm_operator.facts.lookup import CONFIG, HUB, UNAVAILABLE, FactsAnswer, from_catalog
from llm_operator.planning.gpus import (
    GPU_MEMORY_LABEL,
    GPU_PRODUCT_LABEL,
    MAX_GPUS_PER_NODE,
    UnknownGpuType,
    gpu_type_for,
)

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
EXIT_OK, EXIT_BLOCKED, EXIT_BAD_INPUT = 0, 1, 2


def add_render_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--file", required=True, help="manifest file, or - for standard input")
    p.add_argument("--namespace", default="default", help="namespace for manifests that name none")
    p.add_argument(
        "--gpu",
        help="the GPU type of the cluster's nodes (e.g. h100-80gb; see `plan --list-gpus`); "
        "default: the GPU product the spec asks for, else unknown",
    )
    p.add_argument("--config", help="the model's config.json, for the plan (as `plan --config`)")
    p.add_argument("--params", type=int, help="the model's exact parameter count (with --config)")
    p.add_argument(
        "--hub",
        action="store_true",
        help="read the model's facts and the adapters' adapter_config.json from the Hub "
        "(HF_ENDPOINT and HF_TOKEN honoured), as the operator does",
    )
    p.add_argument(
        "--catalog-file",
        action="append",
        default=[],
        metavar="PATH",
        help="more catalog entries, as the operator's --catalog-file (repeatable)",
    )
    p.add_argument(
        "--engine",
        choices=ENGINE_NAMES,
        help="render as if spec.engine.name were this (default: what the manifest says)",
    )
    p.add_argument(
        "--downloader-image",
        default="",
        metavar="IMAGE",
        help="as the operator's --downloader-image: the download Job's image where "
        f"spec.cache.downloaderImage is empty (default {api.DEFAULT_DOWNLOADER_IMAGE})",
    )


def _gpu_nodes(args: argparse.Namespace, spec: api.LLMDeploymentSpec) -> tuple[dict[str, Any], ...]:
    name = args.gpu or spec.gpu.product
    if not name:
        return ()
    gpu = gpu_type_for(name)
    labels = {GPU_PRODUCT_LABEL: gpu.products[0] if gpu.products else gpu.name, GPU_MEMORY_LABEL: str(gpu.memory_mib)}
    # As many nodes as a replica may span, each with the GPUs a pod may ask for.
    allocatable = {spec.gpu.resource: str(max(spec.gpus or 0, MAX_GPUS_PER_NODE))}
    return tuple(
        {"metadata": {"name": f"assumed-{gpu.name}-{i}", "labels": labels}, "status": {"allocatable": allocatable}}
        for i in range(api.MAX_NODES)
    )


def _facts(args: argparse.Namespace, spec: api.LLMDeploymentSpec) -> FactsAnswer:
    if args.config:
        facts = replace(
            facts_from_local(args.config, args.params, None, model_id=spec.model.id), revision=spec.model.revision
        )
        return FactsAnswer(facts, CONFIG)
    # Without the Hub, the catalog answers for the models it knows, as in the operator.
    catalog = load(args.catalog_file)
    if not args.hub:
        return from_catalog(
            catalog,
            spec.model.id,
            spec.model.revision,
            FactsAnswer(None, UNAVAILABLE, "render has no model facts for it (give --config and --params, or --hub)."),
        )
    try:
        return FactsAnswer(facts_from_hub(spec.model.id, spec.model.revision), HUB)
    except ModelFactsUnavailable as err:
        # Said only when the catalog has them not either: then --config and --params are the way left.
        why = f"{err} Or give the model's config.json and exact parameter count (--config and --params)."
        return from_catalog(catalog, spec.model.id, spec.model.revision, FactsAnswer(None, UNAVAILABLE, why))


def _adapter_configs(args: argparse.Namespace, spec: api.LLMDeploymentSpec) -> dict[str, dict[str, Any] | None]:
    configs: dict[str, dict[str, Any] | None] = {}
    for a in spec.adapters:
        try:
            configs[a.name] = adapter_config_from_hub(a.id, a.revision) if args.hub else None
        except ModelFactsUnavailable:
            configs[a.name] = None
    return configs


Children = dict[str, tuple[dict[str, Any], ...]]  # kind -> the children of that kind, as Observed holds them


def _assumed_cache(
    owner: Owner, spec: api.LLMDeploymentSpec, downloader_image: str
) -> tuple[Children, tuple[dict[str, Any], ...]]:
    """A bound claim and a finished download Job, as the operator sees them once the weights are cached."""
    job = desired_download_job(owner, spec, downloader_image)
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
    claim = desired_cache_claim(owner, spec)
    claim["status"] = {"phase": "Bound"}
    classes = ({"name": spec.cache.storage_class_name or "default", "default": True},)
    return {"Job": (trim_child(job),), "PersistentVolumeClaim": (trim_child(claim),)}, classes


def render_one(doc: dict[str, Any], args: argparse.Namespace, now: dt.datetime) -> tuple[Decision, list[str]]:
    """decide() on one manifest; and the comments saying what was assumed."""
    if getattr(args, "engine", None):
        spec_doc = dict(doc.get("spec") or {})
        spec_doc["engine"] = {**(spec_doc.get("engine") or {}), "name": args.engine}
        doc = {**doc, "spec": spec_doc}
    spec = api.validate_manifest(doc)
    meta = doc["metadata"]
    llmd = {
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace") or args.namespace,
            "uid": meta.get("uid", PLACEHOLDER_UID),
            "generation": 1,
        },
        "spec": doc.get("spec") or {},
        "status": {},
    }
    owner = Owner(llmd["metadata"]["name"], llmd["metadata"]["namespace"], llmd["metadata"]["uid"])
    downloader_image = getattr(args, "downloader_image", "")  # scripts build args without it (hack/)
    children: Children = {}
    classes: tuple[dict[str, Any], ...] = ()
    comments = []
    if spec.cache.enabled:
        children, classes = _assumed_cache(owner, spec, downloader_image)
        comments.append(
            "assumed: the cache claim is bound and the download Job succeeded; adapters are then "
            "loaded from the cache by path (shown here by Hub id: the commits are known only then)."
        )
    nodes = _gpu_nodes(args, spec)
    if not nodes:
        comments.append("assumed: no GPU node is known (give --gpu TYPE for the cluster's GPUs).")
    else:
        comments.append(
            f"assumed: GPU nodes of type {nodes[0]['metadata']['labels'][GPU_PRODUCT_LABEL]}"
            + (
                ", and LeaderWorkerSet installed (the operator run with --leaderworkersets)."
                if (spec.nodes or 1) > 1 or spec.nodes is None and spec.engine.name == "vllm"
                else "."
            )
        )
    configs = _adapter_configs(args, spec)
    unread = [name for name, c in configs.items() if c is None]
    if unread:
        comments.append(f"unknown offline: adapter_config.json of {', '.join(unread)} (not checked; --hub reads them).")
    observed = Observed(
        llmd=llmd,
        children=children,
        nodes=nodes,
        storage_classes=classes,
        multi_node=True,
        downloader_image=downloader_image,
    )
    lookups = Lookups(facts=_facts(args, spec), adapter_configs=configs)
    decision = decide(observed, lookups, now)
    if decision.apply or decision.prune:
        # As the operator does: the status it writes is decided again after the apply.
        after = decide(with_applied(observed, list(decision.apply), list(decision.prune)), lookups, now)
        decision = replace(decision, status=after.status, phase=after.phase)
    comments += [f"unknown offline: {note}" for note in decision.notes if note]
    return decision, comments


def _commented(title: str, value: Any) -> str:
    text = yaml.safe_dump(value, sort_keys=False, width=120).rstrip("\n")
    return f"# {title}\n" + "\n".join(f"#   {line}" for line in text.splitlines()) + "\n"


def run_render(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    stream = sys.stdin if args.file == "-" else open(args.file)
    with stream:
        docs = [d for d in yaml.safe_load_all(stream) if d]
    now = dt.datetime.now(dt.UTC)
    blocked = False
    for doc in docs:
        name = (doc.get("metadata") or {}).get("name", "?")
        try:
            decision, comments = render_one(doc, args, now)
        except api.InvalidSpec as problem:
            err.write(f"llm-operator render: {name}: {problem}\n")
            return EXIT_BAD_INPUT
        except (UnknownGpuType, OSError, ValueError) as problem:
            err.write(f"llm-operator render: {name}: {problem}\n")
            return EXIT_BAD_INPUT
        assert decision.status is not None  # every decision but Terminating's has one, and render deletes nothing
        ready = next(c for c in decision.status["conditions"] if c["type"] == "Ready")
        out.write(f"# LLMDeployment {name}: {decision.phase}: {ready['message']}\n")
        for comment in comments:
            out.write(f"# {comment}\n")
        status = {k: v for k, v in decision.status.items() if k != "conditions"}
        status["conditions"] = [
            {k: c[k] for k in ("type", "status", "reason", "message")} for c in decision.status["conditions"]
        ]
        out.write(_commented("status the operator would write:", status))
        for child in decision.desired:
            out.write("---\n")
            out.write(yaml.safe_dump(child, sort_keys=False))
        blocked = blocked or decision.blocked is not None
    return EXIT_BLOCKED if blocked else EXIT_OK

"""Figures from what was recorded: percentiles, CPU seconds, latencies, ratios, status
changes, the profile's summary."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from llm_operator import api
from llm_operator.decide.manifests import INSTANCE_LABEL, MANAGED_BY
from llm_operator.kube.client import Kube


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    v = sorted(values)
    return v[max(0, min(len(v) - 1, int(round(q / 100 * len(v) + 0.5)) - 1))]


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used, its threads included; None once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


def latencies(rec: dict, names: list[str], end_key: str = "done") -> dict[str, float]:
    """Per object: seconds from first seen (ADDED) to `end_key`."""
    return {n: rec[end_key][n] - rec["created"][n] for n in names if n in rec[end_key] and n in rec["created"]}


def cluster_clock_lags(kube: Kube, namespace: str, kinds: list[tuple[str, str]]) -> list[float]:
    """From the cluster's own timestamps (whole seconds): last child's creationTimestamp
    minus the LLMDeployment's. A coarse cross-check of the watch-based figures."""
    import datetime as dt

    def ts(obj: dict) -> float:
        return dt.datetime.fromisoformat(obj["metadata"]["creationTimestamp"].replace("Z", "+00:00")).timestamp()

    owners = {o["metadata"]["name"]: ts(o) for o in kube.list(api.API_VERSION, api.KIND, namespace)}
    last_child: dict[str, float] = {}
    for av, kind in kinds:
        for c in kube.list(av, kind, namespace, f"app.kubernetes.io/managed-by={MANAGED_BY}"):
            owner = (c["metadata"].get("labels") or {}).get(INSTANCE_LABEL)
            if owner in owners:
                last_child[owner] = max(last_child.get(owner, 0.0), ts(c))
    return [last_child[n] - owners[n] for n in owners if n in last_child]


def status_changes(before: dict[str, dict], after: dict[str, dict], limit: int = 5) -> dict:
    """Objects whose status differs, with each differing field before -> after (a few)."""
    changed = {}
    for key in sorted(before):
        a, b = before[key], after.get(key, {})
        fields = {
            k: f"{json.dumps(a.get(k))[:300]} -> {json.dumps(b.get(k))[:300]}"
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        }
        if fields:
            changed[key] = fields
    return {"objects": len(changed), "examples": dict(list(changed.items())[:limit])}


def _le(value, limit) -> bool | None:
    return None if value is None else value <= limit


def _ratio(a, b) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def summarize_profile(path: Path, top: int = 15) -> dict:
    """From py-spy's collapsed stacks: the functions with the most samples on top of the
    stack (self), and the operator's own functions with the most samples anywhere (total)."""
    self_counts: dict[str, int] = {}
    total_counts: dict[str, int] = {}
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        frames = stack.split(";")
        leaf = re.sub(r" \(.*?:\d+\)$", "", frames[-1].strip())
        leaf_file = re.search(r"\((.*?):\d+\)", frames[-1])
        key = f"{leaf} ({Path(leaf_file.group(1)).name})" if leaf_file else leaf
        self_counts[key] = self_counts.get(key, 0) + n
        seen = set()
        for fr in frames:
            m = re.match(r"\s*(.*?) \((.*?):\d+\)", fr)
            if m and ("llm_operator" in m.group(2) or "kopf" in m.group(2) or "kubernetes" in m.group(2)):
                k = f"{m.group(1)} ({'/'.join(Path(m.group(2)).parts[-2:])})"
                if k not in seen:
                    seen.add(k)
                    total_counts[k] = total_counts.get(k, 0) + n

    def share(d: dict) -> list[str]:
        return [f"{k}: {100 * v / samples:.1f}%" for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": samples, "top_self": share(self_counts), "top_total_operator_kopf_client": share(total_counts)}

"""The read model: what the operator knows of the cluster, fed by the watches kopf runs.

Every kind a reconcile reads (LLMDeployments, their children, the pods of those children,
nodes, StorageClasses) is watched once, label-filtered by the apiserver where it can be,
and kept in kopf indexes trimmed to the fields a decision needs. A reconcile takes a
snapshot of one owner from them: no GET and no LIST in the steady state.

Our own writes come back on the watches a moment later. Until they do, the response of
each write is kept in an overlay (newest resourceVersion wins), so that a reconcile that
runs before the echo neither writes the same thing again nor reports a stale state.

A name the API said is taken by an object not ours is remembered too (`Taken`), until the
watch of that one name (informers.TakenNames) sees the object change or go: the watches
here see only objects with our labels, so without it every reconcile would try again.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from llm_operator import api
from llm_operator.decide.observed import CHILD_KINDS, TERMINATING_S, Key, Observed, parse_spec
from llm_operator.kube.kinds import KINDS


def _rv(obj: Mapping[str, Any] | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:  # opaque on some servers: then the watch is the only truth
        return 0


@dataclass(frozen=True)
class Taken:
    """A name one of our children could not take: an object not ours holds it."""

    uid: str  # the LLMDeployment's whose child it was to be (a new one of the same name starts afresh)
    whose: str  # who holds it, as the status says (decide.writes.owner_words)
    version: str  # the holder's resourceVersion when read: its watch starts there


class ReadModel:
    """The kopf indexes (bound at startup) plus the overlay of our own recent writes.

    `snapshot` runs on the event loop, where kopf updates the indexes, so it reads a
    consistent state without locks; the overlay is written from worker threads."""

    LLMD_INDEX = "llmdeployments_index"
    POD_INDEX = "pods_index"
    NODE_INDEX = "nodes_index"
    STORAGE_CLASS_INDEX = "storageclasses_index"

    @staticmethod
    def child_index(kind: str) -> str:
        return f"children_{KINDS[kind].plural}_index"

    def __init__(self) -> None:
        self._indexes: Mapping[str, Any] = {}
        self._overlay: dict[Key, dict[tuple[str, str], dict[str, Any] | None]] = {}
        self._lock = threading.Lock()
        self._terminating: dict[str, float] = {}  # namespace -> when it refused a write as terminating
        self.multi_node = False  # LeaderWorkerSets are watched (and may be made)
        self.downloader_image = ""  # the download Job's image where a spec names none (empty: the default)
        # Each LLMDeployment's spec, parsed once per generation: owner -> ((uid, generation), spec).
        self._specs: dict[Key, tuple[tuple[Any, Any], api.LLMDeploymentSpec | api.InvalidSpec]] = {}
        self._taken: dict[Key, dict[tuple[str, str], Taken]] = {}  # owner -> (kind, name) -> its holder

    def bind(self, indexes: Mapping[str, Any], multi_node: bool = False, downloader_image: str = "") -> None:
        self._indexes = indexes
        self.multi_node = multi_node
        self.downloader_image = downloader_image

    def _values(self, index: str, key: Key | str) -> list[dict[str, Any]]:
        idx = self._indexes.get(index)
        if idx is None or key not in idx:
            return []
        return list(idx[key])

    def namespace_terminating(self, namespace: str, now: float) -> None:
        self._terminating[namespace] = now

    def parsed_spec(
        self, key: Key, llmd: Mapping[str, Any] | None = None
    ) -> api.LLMDeploymentSpec | api.InvalidSpec | None:
        """An LLMDeployment's spec parsed (api.LLMDeploymentSpec, or the api.InvalidSpec it
        raised; None when it is gone). A spec changes only with metadata.generation, so it
        is parsed once per generation, not once per event or per decide."""
        if llmd is None:
            watched = self._values(self.LLMD_INDEX, key)
            if not watched:
                return None
            llmd = watched[0]
        meta = llmd["metadata"]
        tag = (meta.get("uid"), meta.get("generation"))
        with self._lock:
            hit = self._specs.get(key)
        if hit is not None and hit[0] == tag and tag[1] is not None:
            return hit[1]
        spec = parse_spec(llmd)
        with self._lock:
            self._specs[key] = (tag, spec)
        return spec

    def keys(self) -> list[Key]:
        idx = self._indexes.get(self.LLMD_INDEX)
        return list(idx) if idx is not None else []

    def remember(self, owner: Key, obj: dict[str, Any] | None, kind: str, name: str) -> None:
        """Keep the response of our own write (None: deleted) until the watch echoes it."""
        with self._lock:
            self._overlay.setdefault(owner, {})[(kind, name)] = obj

    def remember_taken(self, owner: Key, kind: str, name: str, taken: Taken) -> None:
        """The API refused to create a child: an object not ours has its name (worker thread)."""
        with self._lock:
            self._taken.setdefault(owner, {})[(kind, name)] = taken

    def taken(self, owner: Key) -> dict[tuple[str, str], Taken]:
        """The names remembered as taken for `owner`."""
        with self._lock:
            return dict(self._taken.get(owner) or {})

    def retake(self, owner: Key, kind: str, name: str, whose: str | None) -> bool:
        """What the watch of a taken name shows now: its holder (None: the name is free for
        us, or held by ours). Whether that changes what a decision reads."""
        with self._lock:
            entries = self._taken.get(owner) or {}
            was = entries.get((kind, name))
            if was is None or was.whose == whose:
                return False
            if whose is None:
                del entries[(kind, name)]
                if not entries:
                    del self._taken[owner]
            else:
                entries[(kind, name)] = replace(was, whose=whose)
            return True

    def is_echo(self, owner: Key, body: Mapping[str, Any]) -> bool:
        """The watch event of an object as our own last write left it: nothing new to
        reconcile for (the reconcile that wrote it decided on that very state)."""
        meta = body.get("metadata") or {}
        with self._lock:
            ours = (self._overlay.get(owner) or {}).get((body.get("kind", ""), meta.get("name", "")))
        return ours is not None and _rv(ours) == _rv(body) != 0

    def watched(self, index: str, owner: Key | str, name: str) -> dict[str, Any] | None:
        """What an index holds now for one object of an owner (on the event loop)."""
        return next((v for v in self._values(index, owner) if v["metadata"].get("name") == name), None)

    def forget(self, owner: Key) -> None:
        with self._lock:
            self._overlay.pop(owner, None)
            self._specs.pop(owner, None)
            self._taken.pop(owner, None)

    def _fresher(
        self, owner: Key, kind: str, name: str, watched: dict[str, Any] | None
    ) -> tuple[bool, dict[str, Any] | None]:
        """(whether the overlay decides, what it says) for one object."""
        with self._lock:
            entries = self._overlay.get(owner)
            if not entries or (kind, name) not in entries:
                return False, None
            ours = entries[(kind, name)]
            if ours is None:
                # Deleted by us: the watch may still show it until its DELETED arrives.
                if watched is None or watched["metadata"].get("deletionTimestamp"):
                    del entries[(kind, name)]
                    return False, None
                return True, None
            if watched is not None and _rv(watched) >= _rv(ours):
                del entries[(kind, name)]  # the watch has caught up
                return False, None
            return True, ours

    def snapshot(self, key: Key, now: float = 0.0) -> Observed | None:
        """One owner as the watches (and our newer writes) show it; None once it is gone.
        `now` (monotonic) ages out a namespace that refused writes as terminating: a new
        namespace of the same name is written to again after TERMINATING_S."""
        namespace, name = key
        llmds = self._values(self.LLMD_INDEX, key)
        watched = llmds[0] if llmds else None
        if watched is None:
            return None  # the watch is the only word on whether it exists: gone (or never seen)
        decided, ours = self._fresher(key, api.KIND, name, watched)
        llmd = ours if decided and ours is not None else watched
        children: dict[str, tuple[dict[str, Any], ...]] = {}
        for kind in CHILD_KINDS:
            seen = {c["metadata"]["name"]: c for c in self._values(self.child_index(kind), key)}
            with self._lock:
                ours_of_kind = [n for (k, n) in self._overlay.get(key, {}) if k == kind]
            for child_name in set(seen) | set(ours_of_kind):
                decided, obj = self._fresher(key, kind, child_name, seen.get(child_name))
                if decided:
                    if obj is None:
                        seen.pop(child_name, None)
                    else:
                        seen[child_name] = obj
            if seen:
                children[kind] = tuple(sorted(seen.values(), key=lambda c: c["metadata"]["name"]))
        return Observed(
            llmd=llmd,
            children=children,
            pods=tuple(self._values(self.POD_INDEX, key)),
            nodes=tuple(self._values(self.NODE_INDEX, "nodes")),
            storage_classes=tuple(self._values(self.STORAGE_CLASS_INDEX, "storageclasses")),
            namespace_terminating=now - self._terminating.get(namespace, -1e18) < TERMINATING_S,
            multi_node=self.multi_node,
            downloader_image=self.downloader_image,
            spec=self.parsed_spec(key, llmd),
            taken={k: t.whose for k, t in self.taken(key).items() if t.uid == llmd["metadata"].get("uid")},
        )

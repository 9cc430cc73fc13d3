"""Informers: list-then-watch streams of the operator's children and their pods, kept in
memory by owner, trimmed to what decisions read.

The children's and pods' events are most of the events a burst brings (a Service's and a
Deployment's ADDED, the controller manager's status updates); each costs here a JSON
parse, a trim and a comparison, on the event loop, without kopf's per-object machinery
(its per-object queues, bodies and handler bookkeeping), which profiling showed was the
larger part of the operator's CPU in a burst. LLMDeployments, nodes and StorageClasses
stay with kopf.

Every change a decision could tell apart wakes the owner; a status rewrite of fields we
drop, or the echo of our own write, does not.

Beside them, `TakenNames` watches each name a child of ours could not take (an object not
ours, without our labels, holds it), one name at a time, for as long as it is taken.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from llm_operator.controller.readmodel import ReadModel, Taken
from llm_operator.decide.observed import Key, owner_of, same_but_version, trim_child, trim_pod
from llm_operator.decide.writes import holder
from llm_operator.kube.asyncclient import AsyncKube
from llm_operator.kube.errors import KubeError
from llm_operator.kube.kinds import KINDS, collection_path

log = logging.getLogger(__name__)

Wake = Callable[[Key, Mapping[str, Any] | None], None]


class OwnerIndex(Mapping[Key, tuple[dict[str, Any], ...]]):
    """owner -> the trimmed objects labelled with its name (what a kopf index offered)."""

    def __init__(self) -> None:
        self._by_owner: dict[Key, dict[str, dict[str, Any]]] = {}
        self._owner_of: dict[tuple[str, str], Key] = {}  # (namespace, name) -> owner

    def __getitem__(self, owner: Key) -> tuple[dict[str, Any], ...]:
        return tuple(self._by_owner[owner].values())

    def __contains__(self, owner: object) -> bool:
        return owner in self._by_owner

    def __iter__(self) -> Iterator[Key]:
        return iter(self._by_owner)

    def __len__(self) -> int:
        return len(self._by_owner)

    def get_one(self, owner: Key, name: str) -> dict[str, Any] | None:
        return (self._by_owner.get(owner) or {}).get(name)

    def put(self, namespace: str, name: str, owner: Key, trimmed: dict[str, Any]) -> Key | None:
        """Store; returns the former owner when the object moved to another one."""
        former = self._owner_of.get((namespace, name))
        if former is not None and former != owner:
            self._drop_from(former, name)
        self._owner_of[(namespace, name)] = owner
        self._by_owner.setdefault(owner, {})[name] = trimmed
        return former if former != owner else None

    def drop(self, namespace: str, name: str) -> Key | None:
        """Forget an object; returns its owner (None when it was not held)."""
        owner = self._owner_of.pop((namespace, name), None)
        if owner is not None:
            self._drop_from(owner, name)
        return owner

    def _drop_from(self, owner: Key, name: str) -> None:
        objs = self._by_owner.get(owner)
        if objs is not None:
            objs.pop(name, None)
            if not objs:
                del self._by_owner[owner]

    def in_namespace(self, namespace: str | None) -> list[tuple[str, str]]:
        return [k for k in self._owner_of if namespace is None or k[0] == namespace]


class Informer:
    """One kind, in one namespace or all, label-filtered by the apiserver."""

    def __init__(
        self,
        kube: AsyncKube,
        path: str,
        selector: str,
        kind: str,
        api_version: str,
        index: OwnerIndex,
        trim: Callable[[Mapping[str, Any]], dict[str, Any]],
        wake: Wake,
        namespace: str | None,
    ) -> None:
        self.kube, self.path, self.selector = kube, path, selector
        self.kind, self.api_version = kind, api_version
        self.index, self.trim, self.wake, self.namespace = index, trim, wake, namespace
        self.synced = asyncio.Event()

    def on_list(self, items: list[dict[str, Any]]) -> None:
        """A (re)listing: the index's part for this scope becomes exactly these items, and
        every owner whose objects changed meanwhile is woken."""
        seen: set[tuple[str, str]] = set()
        for item in items:
            item.setdefault("kind", self.kind)  # a list's items carry no kind
            item.setdefault("apiVersion", self.api_version)
            self.on_event("ADDED", item)
            meta = item.get("metadata") or {}
            seen.add((meta.get("namespace", ""), meta.get("name", "")))
        for namespace, name in self.index.in_namespace(self.namespace):
            if (namespace, name) not in seen:
                owner = self.index.drop(namespace, name)
                if owner is not None:
                    self.wake(owner, None)
        self.synced.set()

    def on_event(self, kind: str, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        if kind == "DELETED":
            owner = self.index.drop(namespace, name)
            if owner is not None:
                self.wake(owner, None)  # made again, or its pods' state re-read
            return
        owner = owner_of(body)
        if owner is None:  # no longer labelled for an owner
            former = self.index.drop(namespace, name)
            if former is not None:
                self.wake(former, None)
            return
        trimmed = self.trim(body)
        before = self.index.get_one(owner, name)
        former = self.index.put(namespace, name, owner, trimmed)
        if former is not None:
            self.wake(former, None)
        if not same_but_version(before, trimmed):
            self.wake(owner, body)

    def on_failure(self, err: Exception) -> None:
        """A kind the cluster does not serve (404: an optional CRD not installed) or the
        operator may not list (403) must not hold up every other object: it counts as listed
        and empty, and the listing is retried until it works."""
        if isinstance(err, KubeError) and err.status in (403, 404) and not self.synced.is_set():
            log.error(
                "cannot list %s (HTTP %d): going on without them, retrying in the background%s",
                self.path,
                err.status,
                "; the operator's role must allow list and watch on them"
                if err.status == 403
                else "; is the kind installed?",
            )
            self.synced.set()

    async def run(self, stop: asyncio.Event) -> None:
        await self.kube.list_watch(self.path, self.selector, self.on_list, self.on_event, stop, self.on_failure)


class Informers:
    """The operator's informers: every child kind it makes and the pods of those children,
    in each watched namespace (or cluster-wide), feeding the read model's indexes."""

    def __init__(
        self, kube: AsyncKube, kinds: tuple[str, ...], namespaces: list[str] | None, selector: str, wake: Wake
    ) -> None:
        self.kube = kube
        self.indexes: dict[str, OwnerIndex] = {}
        self.informers: list[Informer] = []
        scopes: list[str | None] = list(namespaces) if namespaces else [None]
        watched = [(kind, ReadModel.child_index(kind), trim_child) for kind in kinds]
        watched.append(("Pod", ReadModel.POD_INDEX, trim_pod))
        for kind, index_name, trim in watched:
            group, version, plural = KINDS[kind].group, KINDS[kind].version, KINDS[kind].plural
            index = self.indexes[index_name] = OwnerIndex()
            api_version = f"{group}/{version}" if group else version
            for ns in scopes:
                self.informers.append(
                    Informer(
                        kube,
                        collection_path(group, version, plural, ns),
                        selector,
                        kind,
                        api_version,
                        index,
                        trim,
                        wake,
                        ns,
                    )
                )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.kube.start()
        self._tasks = [asyncio.create_task(i.run(self._stop), name=f"informer {i.path}") for i in self.informers]

    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self.informers)

    async def wait_synced(self) -> None:
        await asyncio.gather(*(i.synced.wait() for i in self.informers))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.kube.close()


class TakenNames:
    """The watches of names our children could not take. The create's 409 and the GET that
    says whose the object is are the one round trip a conflict costs: the read model
    remembers the holder, and a watch of that one name (a field selector), from the version
    the GET read, forgets it and wakes the owner once the object goes or becomes ours (the
    reconcile then makes or applies the child at once). Another holder is kept and woken
    for (the status names it); a change of anything else wakes nobody."""

    def __init__(self, kube: AsyncKube, model: ReadModel, wake: Wake) -> None:
        self.kube, self.model, self.wake = kube, model, wake
        self._tasks: dict[tuple[Key, str, str], asyncio.Task[None]] = {}

    def sync(self, owner: Key) -> None:
        """On the event loop, after a reconcile of `owner`: a watch for each name the read
        model remembers as taken, and none for the names it no longer does."""
        taken = self.model.taken(owner)
        for (kind, name), entry in taken.items():
            if (owner, kind, name) not in self._tasks:
                self._tasks[(owner, kind, name)] = asyncio.create_task(
                    self._watch(owner, kind, name, entry), name=f"taken {kind} {owner[0]}/{name}"
                )
        for key in [k for k in self._tasks if k[0] == owner and (k[1], k[2]) not in taken]:
            self._end(key)

    def seen(self, owner: Key, kind: str, name: str, obj: Mapping[str, Any] | None) -> None:
        """The object holding a taken name as its watch shows it now (None: gone)."""
        entry = self.model.taken(owner).get((kind, name))
        whose = None if entry is None else holder(None if obj is None else dict(obj), entry.uid)
        if self.model.retake(owner, kind, name, whose):
            self.wake(owner, None)
        if whose is None:
            self._end((owner, kind, name))

    def failed(self, owner: Key, kind: str, name: str) -> None:
        """The watch broke: the name is no longer remembered (the next reconcile tries the
        create again, which watches it anew), and nobody is woken (no loop of tries)."""
        self.model.retake(owner, kind, name, None)
        self._end((owner, kind, name))

    def _end(self, key: tuple[Key, str, str]) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    async def _watch(self, owner: Key, kind: str, name: str, entry: Taken) -> None:
        k = KINDS[kind]
        stop = asyncio.Event()  # never set: the task is cancelled when the name needs no watch
        await self.kube.list_watch(
            collection_path(k.group, k.version, k.plural, owner[0]),
            "",
            lambda items: self.seen(owner, kind, name, items[0] if items else None),
            lambda event, obj: self.seen(owner, kind, name, None if event == "DELETED" else obj),
            stop,
            lambda _err: self.failed(owner, kind, name),
            fields=f"metadata.name={name}",
            since=entry.version,
        )

    def forget(self, owner: Key) -> None:
        """An owner is gone: its watches end."""
        for key in [k for k in self._tasks if k[0] == owner]:
            self._end(key)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""The apiserver over raw HTTPS (watches and /metrics, outside the kubernetes client), and
its request counters: what a burst cost it, by resource and verb."""

from __future__ import annotations

import http.client
import json
import re
import ssl
from urllib.parse import urlparse

from llm_operator import api
from localcluster import LocalCluster

from .config import OPERATOR_RESOURCES, WRITE_VERBS, BenchError


# ---- raw HTTPS to the apiserver (watches and /metrics, outside the kubernetes client) ---
class Raw:
    """The apiserver over plain http.client with the admin certificate: light enough to
    record watch arrival times without the client's model decoding in the way."""

    def __init__(self, server: str, ca: str, cert: str, key: str):
        self.server, self.ca, self.cert, self.key = server, ca, cert, key
        u = urlparse(server)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.load_cert_chain(cert, key)

    @classmethod
    def of(cls, cluster: LocalCluster) -> Raw:
        p = cluster.pki
        return cls(cluster.server, str(p / "ca.crt"), str(p / "admin.crt"), str(p / "admin.key"))

    def args(self) -> tuple[str, str, str, str]:
        return self.server, self.ca, self.cert, self.key

    def open(
        self, path: str, timeout: float, accept: str = "application/json"
    ) -> tuple[http.client.HTTPSConnection, http.client.HTTPResponse]:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        conn.request("GET", path, headers={"Accept": accept})
        resp = conn.getresponse()
        if resp.status != 200:
            body = resp.read()[:500]
            conn.close()
            raise BenchError(f"GET {path}: {resp.status} {body!r}")
        return conn, resp

    def get(self, path: str, timeout: float = 30, accept: str = "application/json") -> bytes:
        conn, resp = self.open(path, timeout, accept)
        try:
            return resp.read()
        finally:
            conn.close()


def count_objects(raw: Raw, path: str) -> int:
    """How many objects a cluster-wide list holds, reading metadata only."""
    body = raw.get(path, timeout=120, accept="application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
    return len(json.loads(body).get("items") or [])


def apiserver_requests(raw: Raw, verbs: set[str] | None = None) -> dict[tuple[str, str, str, str], float]:
    """apiserver_request_total (of `verbs`, or all but WATCH), by (group, resource, subresource, verb)."""
    out: dict[tuple[str, str, str, str], float] = {}
    for line in raw.get("/metrics", timeout=60).decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        verb = labels.get("verb", "")
        if (verbs is not None and verb not in verbs) or verb == "WATCH":
            continue
        key = (labels.get("group", ""), labels.get("resource", ""), labels.get("subresource", ""), verb)
        out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return out


def apiserver_writes(raw: Raw) -> dict[tuple[str, str, str, str], float]:
    return apiserver_requests(raw, WRITE_VERBS)


def writes_between(before: dict, after: dict, keep=lambda key: True) -> dict[str, float]:
    """Requests per 'resource[/sub] (group) VERB' between two snapshots (nonzero, and `keep(key)`)."""
    out: dict[str, float] = {}
    for key in set(before) | set(after):
        n = after.get(key, 0) - before.get(key, 0)
        if n and keep(key):
            group, res, sub, verb = key
            name = f"{res}{'/' + sub if sub else ''}{' (' + group + ')' if group else ''} {verb}"
            out[name] = out.get(name, 0) + n
    return dict(sorted(out.items()))


def operator_side(key: tuple[str, str, str, str]) -> bool:
    """A write the operator could have made: not a controller's status update of a child,
    not an events.k8s.io Event (the operator posts core/v1 Events)."""
    group, res, sub, _ = key
    if res not in OPERATOR_RESOURCES or group == "events.k8s.io":
        return False
    return not sub or res == api.PLURAL

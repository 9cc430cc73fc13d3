"""The shared asynchronous client's list-then-watch against a small aiohttp server on
127.0.0.1 that speaks the API's list and watch formats: pages, events split across
chunks, a line longer than aiohttp's readline allows, 410 Gone, and a kind not served."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from kubernetes import client

from llm_operator.kube.asyncclient import AsyncKube, KubeError


def obj(name: str, rv: str, pad: int = 0) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}, "data": "x" * pad}


class FakeAPI:
    def __init__(self):
        self.lists = 0
        self.watches = 0
        self.params: list[dict] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/missing"):
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        self.params.append(dict(request.query))
        if "watch" not in request.query:
            self.lists += 1
            if request.query.get("continue") == "page2":
                return web.json_response({"metadata": {"resourceVersion": "10"}, "items": [obj("b", "9")]})
            return web.json_response(
                {"metadata": {"resourceVersion": "10", "continue": "page2"}, "items": [obj("a", "8")]}
            )
        self.watches += 1
        if self.watches == 2:  # the second watch: the version is too old
            resp = web.StreamResponse()
            await resp.prepare(request)
            await resp.write(json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410}}).encode() + b"\n")
            return resp
        resp = web.StreamResponse()
        await resp.prepare(request)
        lines = [
            json.dumps({"type": "ADDED", "object": obj("c", "11")}),
            json.dumps({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}),
            json.dumps({"type": "MODIFIED", "object": obj("big", "13", pad=300_000)}),
        ]
        data = ("\n".join(lines) + "\n").encode()
        for i in range(0, len(data), 777):  # chunks that cut lines anywhere
            await resp.write(data[i : i + 777])
        return resp


def test_list_watch_pages_splits_lines_of_any_length_and_lists_again_after_410():
    async def main():
        fake = FakeAPI()
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", fake.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        conf = client.Configuration()
        conf.host = f"http://127.0.0.1:{port}"
        kube = AsyncKube(conf, connections=0)
        await kube.start()
        listed: list[list[str]] = []
        events: list[tuple[str, str, int]] = []
        stop = asyncio.Event()

        def on_event(kind, o):
            events.append((kind, o["metadata"]["name"], len(o.get("data", ""))))

        def on_list(items):
            listed.append([i["metadata"]["name"] for i in items])
            if len(listed) == 2:
                stop.set()

        task = asyncio.create_task(kube.list_watch("/api/v1/namespaces/ns/things", "a=b", on_list, on_event, stop))
        await asyncio.wait_for(task, 10)
        failures: list[Exception] = []
        stop2 = asyncio.Event()

        def failed(err):
            failures.append(err)
            stop2.set()

        await asyncio.wait_for(kube.list_watch("/api/v1/missing", "", on_list, on_event, stop2, failed), 10)
        await kube.close()
        await runner.cleanup()
        return fake, listed, events, failures

    fake, listed, events, failures = asyncio.run(main())
    assert listed == [["a", "b"], ["a", "b"]]  # both pages, then again after the 410
    assert events == [("ADDED", "c", 0), ("MODIFIED", "big", 300_000)]  # no BOOKMARK; a 300 KB line whole
    watch = next(p for p in fake.params if "watch" in p)
    assert (
        watch["resourceVersion"] == "10" and watch["labelSelector"] == "a=b" and watch["allowWatchBookmarks"] == "true"
    )
    assert fake.params[0] == {"limit": "500", "labelSelector": "a=b"}
    assert isinstance(failures[0], KubeError) and failures[0].status == 404


def test_a_watch_from_a_version_read_lists_nothing_first_and_lists_by_the_field_selector_after_410():
    requests: list[dict] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        requests.append(dict(request.query))
        if "watch" not in request.query:
            return web.json_response({"metadata": {"resourceVersion": "20"}, "items": []})
        resp = web.StreamResponse()
        await resp.prepare(request)
        if len(requests) == 1:
            await resp.write(json.dumps({"type": "DELETED", "object": obj("m", "8")}).encode() + b"\n")
        await resp.write(json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410}}).encode() + b"\n")
        return resp

    async def main():
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conf = client.Configuration()
        conf.host = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        kube = AsyncKube(conf, connections=0)
        await kube.start()
        seen: list = []
        stop = asyncio.Event()

        def on_list(items):
            seen.append(("listed", items))
            stop.set()

        path = "/api/v1/namespaces/ns/services"
        watching = kube.list_watch(
            path, "", on_list, lambda k, o: seen.append((k, o["metadata"]["name"])), stop, None, "metadata.name=m", "7"
        )
        await asyncio.wait_for(watching, 10)
        await kube.close()
        await runner.cleanup()
        return seen

    seen = asyncio.run(main())
    assert seen == [("DELETED", "m"), ("listed", [])]
    watch, listing = requests
    assert (
        watch["resourceVersion"] == "7" and watch["fieldSelector"] == "metadata.name=m" and "labelSelector" not in watch
    )
    assert listing == {"limit": "500", "fieldSelector": "metadata.name=m"}

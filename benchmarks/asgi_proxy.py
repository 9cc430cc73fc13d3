"""The other stack the gateway could have been built on, reduced to what bench_gateway.py
sends: uvicorn (with httptools and uvloop, its "standard" extras) + Starlette + httpx.

It does the gateway's hot path and nothing more: read the JSON body, rewrite `model` to
what TGI answers to, pick the endpoint with the fewest outstanding requests (random ties),
forward, and stream the answer back chunk by chunk. No holding, retries, metrics or keys:
whatever it costs, a full gateway on this stack would cost more. Used by
`bench_gateway.py --asgi` (needs `pip install -e '.[bench]'`).

    python benchmarks/asgi_proxy.py --listen 127.0.0.1:PORT --endpoint 127.0.0.1:P1 ...
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.loopback import require_loopback  # noqa: E402


def build_app(endpoints: list[str]):
    import httpx
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    for e in endpoints:
        require_loopback(e.rpartition(":")[0])
    outstanding = {e: 0 for e in endpoints}
    client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        timeout=httpx.Timeout(None, connect=5.0),
    )

    def pick() -> str:
        low = min(outstanding.values())
        return random.choice([e for e, n in outstanding.items() if n == low])

    async def chat(request: Request):
        body = json.loads(await request.body())
        body["model"] = "tgi"
        endpoint = pick()
        outstanding[endpoint] += 1
        try:
            upstream = await client.send(
                client.build_request(
                    "POST",
                    f"http://{endpoint}/v1/chat/completions",
                    content=json.dumps(body),
                    headers={"Content-Type": "application/json"},
                ),
                stream=True,
            )
        except BaseException:
            outstanding[endpoint] -= 1
            raise

        async def done() -> None:
            outstanding[endpoint] -= 1
            await upstream.aclose()

        if not upstream.headers.get("content-type", "").startswith("text/event-stream"):
            content = await upstream.aread()
            await done()
            return JSONResponse(json.loads(content), status_code=upstream.status_code)
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            media_type="text/event-stream",
            background=BackgroundTask(done),
        )

    async def readyz(request: Request):
        return PlainTextResponse("ok\n")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/readyz", readyz)])


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--listen", required=True, help="HOST:PORT on 127.0.0.0/8")
    p.add_argument("--endpoint", action="append", required=True, help="HOST:PORT of an engine (repeatable)")
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    require_loopback(host)
    uvicorn.run(
        build_app(args.endpoint),
        host=host,
        port=int(port),
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        backlog=4096,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

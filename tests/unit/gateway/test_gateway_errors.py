"""What the gateway answers to bodies and requests a client gets wrong: always OpenAI's error
object ({"error": {"message", "type", "param", "code"}}) as application/json with a 4xx, never a
500 and never aiohttp's plain text. The parsing as pure functions, then each kind of bad
request over a real socket on 127.0.0.1 to a gateway in this process."""

import asyncio
import gzip
import json

import aiohttp
import openai
import pytest
from aiohttp import web

from llm_operator.gateway.endpoints import Endpoint, Model
from llm_operator.gateway.feed import install_static
from llm_operator.gateway.prefix import prefix_key
from llm_operator.gateway.proxy import HTTPFailure, Settings
from llm_operator.gateway.server import Gateway, parse_body, route_failure

DEEP_ARRAYS = b"[" * 100_000
DEEP_OBJECTS = b'{"a":' * 100_000
EXAMPLE = '{"model": "NAME", "messages": [{"role": "user", "content": "Hello"}]}'


def failure_of(raw: bytes) -> HTTPFailure:
    with pytest.raises(HTTPFailure) as caught:
        parse_body(raw)
    return caught.value


# ---- parsing the body: pure ------------------------------------------------------------------


def test_a_good_body_parses_to_its_object():
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true, "prompt": null}'
    assert parse_body(raw) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "prompt": None,
    }


@pytest.mark.parametrize("raw", [DEEP_ARRAYS, DEEP_OBJECTS, b'{"model": "m", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"])
def test_deep_nesting_is_a_400_not_the_parsers_recursion_error(raw):
    failure = failure_of(raw)
    assert (failure.status, failure.type, failure.code) == (400, "invalid_request_error", "json_too_deeply_nested")
    assert failure.message == (
        "The request body is nested too deeply: arrays or objects about 1,000 levels inside each other."
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", f"The request body is empty: send a JSON object such as {EXAMPLE}."),
        (b" \r\n", f"The request body is empty: send a JSON object such as {EXAMPLE}."),
        (b"[]", f"The request body is an array; it must be a JSON object such as {EXAMPLE}."),
        (b'"x"', f"The request body is a string; it must be a JSON object such as {EXAMPLE}."),
        (b"42", f"The request body is a number; it must be a JSON object such as {EXAMPLE}."),
        (b"null", f"The request body is null; it must be a JSON object such as {EXAMPLE}."),
        (
            b'{"model": "m", "messages": [',
            "The request body is not valid JSON: Expecting value: line 1 column 29 (char 28).",
        ),
        (
            b'{"model": "m\xff"}',
            "The request body is not valid JSON: 'utf-8' codec can't decode byte 0xff in position 12: "
            "invalid start byte.",
        ),
        (
            b"model=m&messages=hi",
            "The request body is not valid JSON: Expecting value: line 1 column 1 (char 0).",
        ),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400_saying_what_it_is(raw, message):
    failure = failure_of(raw)
    assert (failure.status, failure.code, failure.param, failure.message) == (400, "invalid_json", None, message)


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (
            {"model": "m", "messages": "hi"},
            "messages",
            '"messages" is a string; it must be an array of message objects such as '
            '[{"role": "user", "content": "Hello"}].',
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "a"}, ["user", "b"]]},
            "messages",
            '"messages[1]" is an array; each message must be an object such as {"role": "user", "content": "Hello"}.',
        ),
        ({"model": "m", "messages": [], "stream": "yes"}, "stream", '"stream" is a string; it must be true or false.'),
        ({"model": "m", "messages": [], "stream": 1}, "stream", '"stream" is a number; it must be true or false.'),
        (
            {"model": "m", "prompt": {"text": "hi"}},
            "prompt",
            '"prompt" is an object; it must be a string or an array of strings.',
        ),
    ],
)
def test_a_field_of_the_wrong_type_is_a_400_naming_the_field(body, param, message):
    failure = failure_of(json.dumps(body).encode())
    assert (failure.status, failure.code, failure.param, failure.message) == (400, "invalid_type", param, message)


def test_aiohttps_own_errors_become_openai_errors():
    missing = route_failure("POST", "/v1/chat", web.HTTPNotFound())
    assert (missing.status, missing.type, missing.code) == (404, "invalid_request_error", "unknown_url")
    assert missing.message.startswith("There is no route POST /v1/chat. The gateway serves POST /v1/chat/completions")
    wrong = route_failure("GET", "/v1/completions", web.HTTPMethodNotAllowed("GET", ["POST"]))
    assert (wrong.status, wrong.code, wrong.headers) == (405, "method_not_allowed", {"Allow": "POST"})
    assert wrong.message == "/v1/completions does not take GET; it takes POST."


def test_a_prompt_with_a_lone_surrogate_still_has_a_prefix_key():
    # "\ud800" is valid JSON and parses to a str that strict UTF-8 cannot encode.
    body = parse_body(b'{"model": "m", "prompt": "a\\ud800"}')
    assert prefix_key(body, None) == b"\x00a\xed\xa0\x80"


# ---- over a socket -------------------------------------------------------------------------


async def start_engine(seen: list[str]):
    async def handler(request):
        seen.append(request.path)
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def start_gateway(engine_port: int, settings: Settings):
    gw = Gateway(settings)
    endpoints = [Endpoint("127.0.0.1", engine_port, "p")]
    install_static(
        gw.store,
        [
            (Model(namespace="models", name="m", engine="vllm", replicas=1, ready=True), endpoints),
            (Model(namespace="models", name="p", engine="vllm", replicas=1, ready=True, routing="prefix"), endpoints),
        ],
    )
    await gw.start([])
    runner = web.AppRunner(gw.app(), handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return gw, runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def chunks(*parts: bytes):
    async def gen():
        for part in parts:
            yield part

    return gen()


LIMIT = 64 * 1024
CHAT, JSON = "/v1/chat/completions", {"Content-Type": "application/json"}
# (what, method, path, body, headers, status, code, param)
BAD_REQUESTS = [
    ("deep arrays", "POST", CHAT, DEEP_ARRAYS[:50_000], JSON, 400, "json_too_deeply_nested", None),
    ("deep objects", "POST", CHAT, DEEP_OBJECTS[:50_000], JSON, 400, "json_too_deeply_nested", None),
    ("invalid UTF-8", "POST", CHAT, b'{"model": "m\xff\xfe"}', JSON, 400, "invalid_json", None),
    ("an array", "POST", CHAT, b"[]", JSON, 400, "invalid_json", None),
    ("a string", "POST", CHAT, b'"x"', JSON, 400, "invalid_json", None),
    ("truncated", "POST", CHAT, b'{"model": "m", "messages": [{"role"', JSON, 400, "invalid_json", None),
    ("empty", "POST", CHAT, b"", JSON, 400, "invalid_json", None),
    ("a form", "POST", CHAT, b"model=m", {}, 400, "invalid_json", None),
    ("model a number", "POST", CHAT, b'{"model": 5, "messages": []}', JSON, 400, "invalid_model", "model"),
    ("messages a string", "POST", CHAT, b'{"model": "m", "messages": "hi"}', JSON, 400, "invalid_type", "messages"),
    ("stream a string", "POST", CHAT, b'{"model": "m", "stream": "yes"}', JSON, 400, "invalid_type", "stream"),
    ("prompt a number", "POST", "/v1/completions", b'{"model": "m", "prompt": 1}', JSON, 400, "invalid_type", "prompt"),
    ("unknown model", "POST", CHAT, b'{"model": "gpt-4", "messages": []}', JSON, 404, "model_not_found", "model"),
    ("huge", "POST", CHAT, b'{"model": "m", "prompt": "' + b"x" * LIMIT + b'"}', JSON, 413, "request_too_large", None),
    ("huge, chunked", "POST", CHAT, chunks(b"[" * LIMIT, b"]" * LIMIT), JSON, 413, "request_too_large", None),
    (
        "gzip bomb",
        "POST",
        CHAT,
        gzip.compress(b" " * 16 * LIMIT),
        {"Content-Encoding": "gzip"},
        413,
        "request_too_large",
        None,
    ),
    ("bad gzip", "POST", CHAT, b"not gzip", {"Content-Encoding": "gzip"}, 400, "unreadable_body", None),
    ("unknown path", "POST", "/v1/chat/completion", b"{}", JSON, 404, "unknown_url", None),
    ("unknown path, GET", "GET", "/", None, {}, 404, "unknown_url", None),
    ("wrong method", "GET", CHAT, None, {}, 405, "method_not_allowed", None),
    ("wrong method, models", "DELETE", "/v1/models", None, {}, 405, "method_not_allowed", None),
]


def test_every_bad_request_gets_an_openai_error_as_json_and_the_engine_sees_none():
    async def scenario():
        seen: list[str] = []
        engine, port = await start_engine(seen)
        gw, runner, url = await start_gateway(port, Settings(max_body_bytes=LIMIT))
        wrong = []
        try:
            async with aiohttp.ClientSession() as s:
                for what, method, path, data, headers, status, code, param in BAD_REQUESTS:
                    async with s.request(method, url + path, data=data, headers=headers) as r:
                        text = await r.text()
                        got = (r.status, r.content_type)
                        body = json.loads(text) if r.content_type == "application/json" else text
                        allow = r.headers.get("Allow")
                    error = body.get("error", {}) if isinstance(body, dict) else {}
                    shape = sorted(error) == ["code", "message", "param", "type"] and isinstance(error["message"], str)
                    if (
                        got != (status, "application/json")
                        or not shape
                        or (error["code"], error["param"])
                        != (
                            code,
                            param,
                        )
                    ):
                        wrong.append((what, got, body))
                    if status == 405 and allow is None:
                        wrong.append((what, "no Allow header", allow))
                # A good body still goes through, and a lone surrogate does not break prefix routing.
                for name in ("m", "p"):
                    body = {"model": name, "messages": [{"role": "user", "content": "a\ud800"}], "stream": False}
                    async with s.post(url + CHAT, json=body) as r:
                        assert (r.status, await r.json()) == (200, {"ok": True})
        finally:
            await runner.cleanup()
            await gw.close()
            await engine.cleanup()
        assert wrong == []
        assert seen == [CHAT, CHAT]

    run(scenario())


def test_the_405_names_the_allowed_methods():
    async def scenario():
        engine, port = await start_engine([])
        gw, runner, url = await start_gateway(port, Settings())
        try:
            async with aiohttp.ClientSession() as s, s.get(url + CHAT) as r:
                assert (r.status, r.headers["Allow"]) == (405, "POST")
                assert await r.json() == {
                    "error": {
                        "message": "/v1/chat/completions does not take GET; it takes POST.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "method_not_allowed",
                    }
                }
        finally:
            await runner.cleanup()
            await gw.close()
            await engine.cleanup()

    run(scenario())


def test_openais_client_reads_the_errors():
    async def scenario():
        engine, port = await start_engine([])
        gw, runner, url = await start_gateway(port, Settings())
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        try:
            with pytest.raises(openai.BadRequestError) as bad:
                await client.chat.completions.create(model="m", messages="hi")  # type: ignore[arg-type]
            assert (bad.value.code, bad.value.param) == ("invalid_type", "messages")
            with pytest.raises(openai.NotFoundError) as missing:
                await client.embeddings.create(model="m", input="hi")
            assert missing.value.code == "unknown_url"
            # The client found the message in the body: with plain text it would show the text itself.
            assert missing.value.message.startswith("Error code: 404 - There is no route POST /v1/embeddings.")
        finally:
            await client.close()
            await runner.cleanup()
            await gw.close()
            await engine.cleanup()

    run(scenario())

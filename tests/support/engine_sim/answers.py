"""The fake engine's answers: TGI's and OpenAI's bodies, whole or as server-sent events, and its
errors, in TGI's shape or vLLM's.
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from .tokens import generated_text, token_text

# vLLM's error "type" for each status it answers with (vllm/entrypoints/openai/protocol.py ErrorResponse).
VLLM_ERROR_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    422: "BadRequestError",
    429: "TooManyRequestsError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
DONE = b"data: [DONE]\n\n"


class BadRequest(Exception):
    """A request the engine refuses: status, message and TGI's error_type."""

    def __init__(self, status: int, message: str, error_type: str = "validation"):
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type


class Job:
    """One admitted generation request."""

    __slots__ = ("id", "adapter", "name", "tokens", "n_out", "stream", "include_usage", "created")

    def __init__(self, job_id, adapter, name, tokens, n_out, stream, body):
        self.id, self.adapter, self.name, self.tokens, self.n_out, self.stream = (
            job_id,
            adapter,
            name,
            tokens,
            n_out,
            stream,
        )
        options = body.get("stream_options") or {}
        self.include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        self.created = 0


def stream_events(job: Job, route: str):
    """(event(i) -> the SSE bytes of token i, the whole last event). A token's event is a bytes
    template filled with %, so a token costs no json.dumps."""
    name = json.dumps(job.name).replace("%", "%%")  # the templates below go through % once, per token
    job.created = created = int(time.time())
    last_text = token_text(job.n_out - 1)
    if route == "/generate_stream":
        # TGI's event; "model" is the fake engine's own addition.
        template = (
            'data: {"index":%d,"token":{"id":%d,"text":"%s","logprob":-0.1,"special":false},'
            '"generated_text":null,"details":null,"model":' + name + "}\n\n"
        ).encode()
        last = {
            "index": job.n_out - 1,
            "token": {"id": job.n_out - 1, "text": last_text, "logprob": -0.1, "special": False},
            "generated_text": generated_text(job.n_out),
            "details": None,
            "model": job.name,
        }

        def event(i: int) -> bytes:
            return template % (i, i, token_text(i).encode())
    elif route == "/v1/chat/completions":
        head = (
            f'data: {{"id":"chatcmpl-{job.id}","object":"chat.completion.chunk","created":{created},'
            f'"model":{name},"system_fingerprint":"fake-engine","choices":[{{"index":0,"delta":'
        )
        tail = '"},"logprobs":null,"finish_reason":null}]}\n\n'
        first = (head + '{"role":"assistant","content":"%s' + tail).encode()
        template = (head + '{"content":"%s' + tail).encode()
        delta = {"role": "assistant", "content": last_text} if job.n_out == 1 else {"content": last_text}
        last = {
            "id": f"chatcmpl-{job.id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": job.name,
            "system_fingerprint": "fake-engine",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": "length"}],
        }

        def event(i: int) -> bytes:
            return (template if i else first) % token_text(i).encode()
    else:
        template = (
            f'data: {{"id":"cmpl-{job.id}","object":"text_completion","created":{created},'
            f'"model":{name},"system_fingerprint":"fake-engine","choices":[{{"index":0,"text":"%s",'
            '"logprobs":null,"finish_reason":null}]}\n\n'
        ).encode()
        last = {
            "id": f"cmpl-{job.id}",
            "object": "text_completion",
            "created": created,
            "model": job.name,
            "system_fingerprint": "fake-engine",
            "choices": [{"index": 0, "text": last_text, "logprobs": None, "finish_reason": "length"}],
        }

        def event(i: int) -> bytes:
            return template % token_text(i).encode()

    return event, b"data: " + json.dumps(last, separators=(",", ":")).encode() + b"\n\n"


def usage(job: Job) -> dict:
    return {
        "prompt_tokens": len(job.tokens),
        "completion_tokens": job.n_out,
        "total_tokens": len(job.tokens) + job.n_out,
    }


def usage_chunk(job: Job, route: str) -> dict:
    kind = "chat.completion.chunk" if route == "/v1/chat/completions" else "text_completion"
    prefix = "chatcmpl" if route == "/v1/chat/completions" else "cmpl"
    return {
        "id": f"{prefix}-{job.id}",
        "object": kind,
        "created": job.created,
        "model": job.name,
        "system_fingerprint": "fake-engine",
        "choices": [],
        "usage": usage(job),
    }


def whole_answer(job: Job, route: str) -> dict:
    text = generated_text(job.n_out)
    if route == "/generate":
        return {"generated_text": text, "model": job.name}
    created = int(time.time())
    if route == "/v1/chat/completions":
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": "length",
        }
        return {
            "id": f"chatcmpl-{job.id}",
            "object": "chat.completion",
            "created": created,
            "model": job.name,
            "system_fingerprint": "fake-engine",
            "choices": [choice],
            "usage": usage(job),
        }
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
    return {
        "id": f"cmpl-{job.id}",
        "object": "text_completion",
        "created": created,
        "model": job.name,
        "system_fingerprint": "fake-engine",
        "choices": [choice],
        "usage": usage(job),
    }


def error_response(flavor: str, status: int, message: str, error_type: str = "validation") -> web.Response:
    """An error as TGI (flavor "tgi") or vLLM (flavor "vllm") answers it."""
    if flavor == "vllm":
        body = {
            "error": {
                "message": message,
                "type": VLLM_ERROR_TYPES.get(status, "BadRequestError"),
                "param": None,
                "code": status,
            }
        }
    else:
        body = {"error": message, "error_type": error_type}
    return web.json_response(body, status=status)

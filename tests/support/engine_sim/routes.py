"""The fake engine's HTTP routes: TGI's and OpenAI's generation routes (parsed here, served by the
engine's _answer), health, /info, /v1/models and /metrics.
"""

from __future__ import annotations

import time

from aiohttp import web

from .tokens import chat_tokens

TGI_VERSION = "3.3.7"


class EngineRoutes:
    """FakeEngine's route handlers; FakeEngine (engine.py) has the state and the generation they use."""

    def add_routes(self, app: web.Application) -> None:
        app.on_response_prepare.append(self._stamp)
        app.router.add_post("/generate", self._generate)
        app.router.add_post("/generate_stream", self._generate_stream)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/health", self._health)
        app.router.add_get("/info", self._info)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/metrics", self._metrics)

    async def _stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["x-fake-engine"] = self.address

    def _tgi_parse(self, stream: bool):
        def parse(body: dict):
            inputs = body["inputs"]
            if not isinstance(inputs, str):
                raise TypeError("`inputs` must be a string")
            parameters = body.get("parameters") or {}
            n_out = parameters.get("max_new_tokens")
            return (
                parameters.get("adapter_id"),
                inputs.split(),
                self.default_max_tokens if n_out is None else n_out,
                stream,
            )

        return parse

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, self._tgi_parse(stream=False))

    async def _generate_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, self._tgi_parse(stream=True))

    def _openai_n_out(self, body: dict):
        n_out = body.get("max_completion_tokens", body.get("max_tokens"))
        return self.default_max_tokens if n_out is None else n_out

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        def parse(body: dict):
            messages = body["messages"]
            if not isinstance(messages, list):
                raise TypeError("`messages` must be a list")
            return body.get("model"), chat_tokens(messages), self._openai_n_out(body), bool(body.get("stream"))

        return await self._answer(request, parse)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        def parse(body: dict):
            prompt = body["prompt"]
            if isinstance(prompt, list):  # one prompt in a list; several are not simulated
                if len(prompt) != 1 or not isinstance(prompt[0], str):
                    raise TypeError("the fake engine takes one string prompt")
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise TypeError("`prompt` must be a string")
            return body.get("model"), prompt.split(), self._openai_n_out(body), bool(body.get("stream"))

        return await self._answer(request, parse)

    async def _health(self, request: web.Request) -> web.Response:
        if self.healthy:
            return web.Response(status=200)
        return self._error(503, "unhealthy", "healthcheck")

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "model_id": self.model_id,
                "model_sha": None,
                "model_dtype": self.model_dtype,
                "model_device_type": "cuda",
                "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": self.max_concurrent_requests,
                "max_best_of": 2,
                "max_stop_sequences": 4,
                "max_input_tokens": self.max_input_tokens,
                "max_total_tokens": self.max_total_tokens,
                "validation_workers": 2,
                "max_client_batch_size": 4,
                "router": "text-generation-router",
                "version": TGI_VERSION,
                "sha": None,
                "docker_label": None,
            }
        )

    async def _models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "fake-engine",
                "root": self.model_id,
                "parent": None,
            }
            for name in self.served_names
        ]
        data += [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "fake-engine",
                "root": name,
                "parent": self.served_names[0] if self.served_names else self.model_id,
            }
            for name in self.adapters
        ]
        return web.json_response({"object": "list", "data": data})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics_text(), content_type="text/plain", charset="utf-8")

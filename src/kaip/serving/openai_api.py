"""OpenAI-compatible routes: ``/v1/models``, ``/v1/embeddings``, ``/v1/completions``,
``/v1/chat/completions`` (with SSE streaming ending in ``data: [DONE]``) and ``/v1/responses``
(:mod:`kaip.serving.responses`).

Requests are checked here and answered with OpenAI-shaped error bodies
(``{"error": {"message", "type", "param", "code"}}``): ``max_tokens`` up to the model's
``serve.maxTokens``, at most :data:`MAX_STOPS` stop strings of at most :data:`MAX_STOP_CHARS`
characters each. A generation is cancelled as soon as its client goes away (the request's
``http.disconnect`` is watched while it runs). How a generation runs, ends and is written back is
:mod:`kaip.serving.generation`. Never touches OIP v2 tensors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import numpy as np
import orjson

from kaip.errors import InferenceError, KaipError, ModelNotFoundError, OverloadedError
from kaip.serving import responses
from kaip.serving.asgi import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    error_headers,
    read_body,
    respond,
)
from kaip.serving.dataplane import ServedModel
from kaip.serving.generation import Generation, GenerationPool, error_document
from kaip.serving.metrics import GenAIMetrics
from kaip.serving.openai_fields import UnsupportedParameter, check
from kaip.serving.runtimes import GenerationParams, TextGenerator, embedder_of, generator_of

log = logging.getLogger(__name__)
PROTOCOL = "openai"
RESPONSES = "/v1/responses"
MAX_STOPS = 4  # as OpenAI's API allows
MAX_STOP_CHARS = 1024
T = TypeVar("T")


def openai_error(exc: KaipError) -> bytes:
    kind = "invalid_request_error" if exc.http_status < 500 else "server_error"
    if isinstance(exc, UnsupportedParameter):
        return error_document(exc.message, kind, exc.code, param=exc.param)
    code = {
        404: "model_not_found",
        413: "request_too_large",
        501: "not_implemented",
        503: "overloaded",
    }.get(exc.http_status)
    return error_document(exc.message, kind, code)


def _field(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise InferenceError(f"'{name}' has the wrong type: {value!r}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _params(body: Mapping[str, Any], default_max: int, cap: int) -> GenerationParams:
    name = "max_completion_tokens"
    max_tokens = _field(body, name, int, None)
    if max_tokens is None:
        name = "max_tokens"
        max_tokens = _field(body, name, int, min(default_max, cap))
    if max_tokens < 1:
        raise InferenceError(f"'{name}' must be at least 1")
    if max_tokens > cap:
        raise InferenceError(
            f"'{name}' is {max_tokens}, over this model's limit of {cap} (serve.maxTokens); ask "
            "for fewer tokens"
        )
    temperature = float(_field(body, "temperature", (int, float), 1.0))
    top_p = float(_field(body, "top_p", (int, float), 1.0))
    if not 0 <= temperature <= 2 or not 0 < top_p <= 1:
        raise InferenceError("'temperature' must be in [0, 2] and 'top_p' in (0, 1]")
    stop = _field(body, "stop", (str, list), [])
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    if len(stops) > MAX_STOPS:
        raise InferenceError(f"'stop' has {len(stops)} strings; send at most {MAX_STOPS}")
    if not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops):
        raise InferenceError(
            f"'stop' must be a string or a list of strings, each 1 to {MAX_STOP_CHARS} characters"
        )
    if _field(body, "n", int, 1) != 1:
        raise UnsupportedParameter("n", "'n' must be 1: one choice per request is supported")
    return GenerationParams(max_tokens, temperature, top_p, stops, _field(body, "seed", int, None))


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    if content is None:
        return ""
    raise InferenceError("message 'content' must be a string or a list of text parts")


class OpenAIRoutes:
    def __init__(
        self,
        model: ServedModel,
        max_request_bytes: int,
        *,
        max_tokens: int,
        generation_workers: int,
        max_waiting: int,
    ) -> None:
        self.model = model
        self.max_request_bytes = max_request_bytes
        self.max_tokens = max_tokens
        self.created = int(time.time())
        self.genai = GenAIMetrics(model.metrics)
        # A thread that produced nothing for a whole timeoutSeconds is past any answer it could
        # still give (the request was cut at that deadline): it is stuck in the runtime.
        self.pool = GenerationPool(
            generation_workers, max_waiting=max_waiting, stall_seconds=model.timeout
        )

    def wedged(self) -> str | None:
        """Why generation cannot make progress any more, or None."""
        return self.pool.wedged()

    def close(self) -> None:
        self.pool.close()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 200
        path, method = scope["path"].rstrip("/"), scope["method"]
        tracing = self.model.tracing
        span = tracing.start(scope["headers"], f"{method} {path}", path) if tracing else None
        try:
            if path == "/v1/models" and method == "GET":
                cards = [self._card(name) for name in self.model.names]
                await respond(send, 200, orjson.dumps({"object": "list", "data": cards}))
            elif path.startswith("/v1/models/") and method == "GET":
                name = self._check_model(path.removeprefix("/v1/models/"))
                await respond(send, 200, orjson.dumps(self._card(name)))
            elif path in ("/v1/embeddings", "/v1/completions", "/v1/chat/completions", RESPONSES):
                if method != "POST":
                    raise InferenceError(f"{path} takes POST")
                body = await self._json(scope, receive)
                name = self._check_model(body.get("model"))
                if not self.model.ready:
                    raise OverloadedError(f"model {name!r} is still loading", retry_after=1.0)
                if path == "/v1/embeddings":
                    await self._embeddings(body, send, name)
                elif path == RESPONSES:
                    await unless_disconnected(self._respond(body, send, name), receive)
                else:
                    chat = path.endswith("chat/completions")
                    await unless_disconnected(self._generate(body, send, name, chat=chat), receive)
            else:
                raise ModelNotFoundError(f"no route {method} {path}")
        except KaipError as exc:
            status = exc.http_status
            await respond(send, status, openai_error(exc), extra=error_headers(exc))
        except ClientDisconnected:
            status = 499
        except Exception:
            status = 500
            log.exception("%s %s failed", method, path)
            err = KaipError("internal error; see server log")
            await respond(send, 500, openai_error(err))
        finally:
            self.model.metrics.observe_request(PROTOCOL, status, time.perf_counter() - started)
            if span is not None and tracing is not None:
                tracing.end(span, status)

    def _card(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self.created, "owned_by": "kaip"}

    def _check_model(self, name: Any) -> str:
        """The served name the request asked for; 404 when it is not one of this model's."""
        if not isinstance(name, str) or name not in self.model.names:
            served = ", ".join(repr(n) for n in self.model.names)
            raise ModelNotFoundError(
                f"The model {name!r} does not exist; this server serves {served}"
            )
        return name

    async def _json(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        content_length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                content_length = value
        raw = await read_body(receive, self.max_request_bytes, content_length)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InferenceError(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise InferenceError("the request body must be a JSON object")
        return body

    # -- embeddings ------------------------------------------------------------------------------

    async def _embeddings(self, body: dict[str, Any], send: Send, name: str) -> None:
        embedder = embedder_of(self.model.runtime)
        if embedder is None:
            raise InferenceError(f"model {self.model.name!r} does not embed text")
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise InferenceError("'input' must be a string or a non-empty list of strings")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise InferenceError("'encoding_format' must be 'float' or 'base64'")
        started = time.perf_counter()
        error = ""
        try:
            loop = asyncio.get_running_loop()
            vectors = await loop.run_in_executor(None, embedder.embed, texts)
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            self.genai.record(
                "embeddings", self.model.name, time.perf_counter() - started, error_type=error
            )
        vectors = np.asarray(vectors, dtype=np.float32)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": (
                    base64.b64encode(row.astype("<f4").tobytes()).decode()
                    if encoding == "base64"
                    else row
                ),
            }
            for i, row in enumerate(vectors)
        ]
        tokens = sum(embedder.count_tokens(t) for t in texts)
        doc = {
            "object": "list",
            "data": data,
            "model": name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        await respond(send, 200, orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))

    # -- completions -----------------------------------------------------------------------------

    async def _generate(self, body: dict[str, Any], send: Send, name: str, *, chat: bool) -> None:
        generator = generator_of(self.model.runtime)
        if generator is None:
            raise InferenceError(f"model {self.model.name!r} does not generate text")
        check(body, chat=chat)
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise InferenceError("'messages' must be a non-empty list")
            if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
                raise InferenceError("each message needs a 'role' string and 'content'")
            prompt = generator.chat_prompt(
                [{"role": m["role"], "content": _message_text(m.get("content"))} for m in messages]
            )
        else:
            raw = body.get("prompt")
            if isinstance(raw, list) and len(raw) == 1:
                raw = raw[0]
            if isinstance(raw, list):
                raise UnsupportedParameter(
                    "prompt", "'prompt' must be one string: send one request per prompt"
                )
            if not isinstance(raw, str):
                raise InferenceError("'prompt' must be a string (one prompt per request)")
            prompt = raw
        params = _params(body, 16 if not chat else 256, self.max_tokens)
        stream = _field(body, "stream", bool, False)
        options = _field(body, "stream_options", dict, {})
        run = self._generation(generator, prompt, params, name, chat=chat)
        if stream:
            await run.stream(send, include_usage=options.get("include_usage") is True)
        else:
            await run.whole(send)

    def _generation(
        self,
        generator: TextGenerator,
        prompt: str,
        params: GenerationParams,
        name: str,
        *,
        chat: bool,
    ) -> Generation:
        return Generation(
            model=self.model.name,
            generator=generator,
            pool=self.pool,
            genai=self.genai,
            prompt=prompt,
            params=params,
            chat=chat,
            timeout=self.model.timeout,
            served_name=name,
        )

    async def _respond(self, body: dict[str, Any], send: Send, name: str) -> None:
        """``POST /v1/responses`` (:mod:`kaip.serving.responses`)."""
        generator = generator_of(self.model.runtime)
        if generator is None:
            raise InferenceError(f"model {self.model.name!r} does not generate text")
        responses.check(body)
        prompt = generator.chat_prompt(responses.messages_of(body))
        limit = body.get("max_output_tokens")
        if limit is not None and (
            not isinstance(limit, int)
            or isinstance(limit, bool)
            or not 1 <= limit <= self.max_tokens
        ):
            raise InferenceError(
                f"'max_output_tokens' must be a whole number from 1 to {self.max_tokens} "
                "(this model's serve.maxTokens)"
            )
        limits = {} if limit is None else {"max_tokens": limit}
        params = _params({**{k: body[k] for k in ("temperature", "top_p") if k in body}, **limits},
                         256, self.max_tokens)  # fmt: skip
        run = self._generation(generator, prompt, params, name, chat=True)
        writer = responses.ResponseWriter(run, body)
        if _field(body, "stream", bool, False):
            await writer.stream(send)
        else:
            await writer.whole(send)


async def unless_disconnected(work: Coroutine[Any, Any, T], receive: Receive) -> T:
    """Run ``work`` (whose request body was read) until done and return what it returns, or
    cancel it when the client goes away first: raises :class:`ClientDisconnected` then."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():  # the client went, or this request itself was cancelled
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        gone.cancel()
    if not task.cancelled():
        return task.result()
    raise ClientDisconnected


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass

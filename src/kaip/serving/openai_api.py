"""OpenAI-compatible routes: ``/v1/models``, ``/v1/embeddings``, ``/v1/completions`` and
``/v1/chat/completions`` (with SSE streaming ending in ``data: [DONE]``).

Requests are checked here and answered with OpenAI-shaped error bodies
(``{"error": {"message", "type", "param", "code"}}``). Generation runs the runtime's token
iterator on a worker thread and streams pieces back through the event loop; the GenAI server
histograms (request duration, time to first token, time per output token) are recorded for
every generation. Never touches OIP v2 tensors.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import numpy as np
import orjson

from kaip.errors import InferenceError, KaipError, ModelNotFoundError, OverloadedError
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
from kaip.serving.metrics import GenAIMetrics
from kaip.serving.runtimes import GenerationParams, embedder_of, generator_of
from kaip.serving.runtimes.base import TextGenerator

log = logging.getLogger(__name__)
PROTOCOL = "openai"
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
]


def openai_error(exc: KaipError) -> bytes:
    kind = "invalid_request_error" if exc.http_status < 500 else "server_error"
    code = {404: "model_not_found", 503: "overloaded", 413: "request_too_large"}.get(
        exc.http_status
    )
    return _error_doc(exc.message, kind, code)


def _error_doc(message: str, kind: str, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def _field(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise InferenceError(f"'{name}' has the wrong type: {value!r}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _params(body: Mapping[str, Any], default_max: int) -> GenerationParams:
    max_tokens = _field(body, "max_completion_tokens", int, None)
    if max_tokens is None:
        max_tokens = _field(body, "max_tokens", int, default_max)
    if max_tokens < 1:
        raise InferenceError("'max_tokens' must be at least 1")
    temperature = float(_field(body, "temperature", (int, float), 1.0))
    top_p = float(_field(body, "top_p", (int, float), 1.0))
    if not 0 <= temperature <= 2 or not 0 < top_p <= 1:
        raise InferenceError("'temperature' must be in [0, 2] and 'top_p' in (0, 1]")
    stop = _field(body, "stop", (str, list), [])
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    if not all(isinstance(s, str) for s in stops):
        raise InferenceError("'stop' must be a string or a list of strings")
    if _field(body, "n", int, 1) != 1:
        raise InferenceError("only n=1 is supported")
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
    def __init__(self, model: ServedModel, max_request_bytes: int) -> None:
        self.model = model
        self.max_request_bytes = max_request_bytes
        self.created = int(time.time())
        self.genai = GenAIMetrics(model.metrics)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 200
        path, method = scope["path"].rstrip("/"), scope["method"]
        tracing = self.model.tracing
        span = tracing.start(scope["headers"], f"{method} {path}", path) if tracing else None
        try:
            if path == "/v1/models" and method == "GET":
                await respond(send, 200, orjson.dumps({"object": "list", "data": [self._card()]}))
            elif path.startswith("/v1/models/") and method == "GET":
                self._check_model(path.removeprefix("/v1/models/"))
                await respond(send, 200, orjson.dumps(self._card()))
            elif path in ("/v1/embeddings", "/v1/completions", "/v1/chat/completions"):
                if method != "POST":
                    raise InferenceError(f"{path} takes POST")
                body = await self._json(scope, receive)
                self._check_model(body.get("model"))
                if not self.model.ready:
                    raise ModelNotFoundError(f"model {self.model.name!r} is still loading")
                if path == "/v1/embeddings":
                    await self._embeddings(body, send)
                else:
                    await self._generate(body, send, chat=path.endswith("chat/completions"))
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

    def _card(self) -> dict[str, Any]:
        name = self.model.name
        return {"id": name, "object": "model", "created": self.created, "owned_by": "kaip"}

    def _check_model(self, name: Any) -> None:
        if name != self.model.name:
            raise ModelNotFoundError(
                f"model {name!r} is not served here; this server serves {self.model.name!r}"
            )

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

    async def _embeddings(self, body: dict[str, Any], send: Send) -> None:
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
            "model": self.model.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        await respond(send, 200, orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))

    # -- completions -----------------------------------------------------------------------------

    async def _generate(self, body: dict[str, Any], send: Send, *, chat: bool) -> None:
        generator = generator_of(self.model.runtime)
        if generator is None:
            raise InferenceError(f"model {self.model.name!r} does not generate text")
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
            if not isinstance(raw, str):
                raise InferenceError("'prompt' must be a string (one prompt per request)")
            prompt = raw
        params = _params(body, default_max=16 if not chat else 256)
        stream = _field(body, "stream", bool, False)
        options = _field(body, "stream_options", dict, {})
        run = _Generation(self, generator, prompt, params, chat)
        if stream:
            await run.stream(send, include_usage=options.get("include_usage") is True)
        else:
            await run.whole(send)


class _Generation:
    """One completion: runs the token iterator, applies stop strings, records GenAI metrics."""

    def __init__(
        self,
        routes: OpenAIRoutes,
        generator: TextGenerator,
        prompt: str,
        params: GenerationParams,
        chat: bool,
    ) -> None:
        self.routes = routes
        self.generator = generator
        self.prompt = prompt
        self.params = params
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.tokens = 0
        self.finish_reason = "stop"
        self.started = time.perf_counter()
        self.first_token: float | None = None

    @property
    def operation(self) -> str:
        return "chat" if self.chat else "text_completion"

    async def pieces(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str | None, BaseException | None]] = asyncio.Queue()
        cancelled = threading.Event()

        def work() -> None:
            try:
                for piece in self.generator.generate(self.prompt, self.params):
                    if cancelled.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, (str(piece), None))
                loop.call_soon_threadsafe(queue.put_nowait, (None, None))
            except BaseException as exc:
                loop.call_soon_threadsafe(queue.put_nowait, (None, exc))

        loop.run_in_executor(None, work)
        text = ""
        try:
            while True:
                piece, error = await queue.get()
                if error is not None:
                    raise error
                if piece is None:
                    return
                if self.first_token is None:
                    self.first_token = time.perf_counter()
                self.tokens += 1
                text += piece
                cut = min((i for s in self.params.stop if (i := text.find(s)) >= 0), default=-1)
                if cut >= 0:
                    yield piece[: max(0, len(piece) - (len(text) - cut))]
                    return
                yield piece
                if self.tokens >= self.params.max_tokens:
                    self.finish_reason = "length"
                    return
        finally:
            cancelled.set()

    def record(self, error: str = "") -> None:
        ttft = None if self.first_token is None else self.first_token - self.started
        self.routes.genai.record(
            self.operation,
            self.routes.model.name,
            time.perf_counter() - self.started,
            ttft=ttft,
            tokens=self.tokens,
            error_type=error,
        )

    def usage(self) -> dict[str, int]:
        prompt_tokens = self.generator.count_tokens(self.prompt)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": self.tokens,
            "total_tokens": prompt_tokens + self.tokens,
        }

    async def whole(self, send: Send) -> None:
        timeout = self.routes.model.timeout
        try:
            async with asyncio.timeout(timeout):
                text = "".join([p async for p in self.pieces()])
        except TimeoutError as exc:
            self.record(type(exc).__name__)
            raise OverloadedError(
                f"no answer within the model's timeoutSeconds ({timeout:g} s); ask for fewer "
                "tokens, stream, or raise serve.timeoutSeconds",
                retry_after=1.0,
            ) from None
        except Exception as exc:
            self.record(type(exc).__name__)
            raise
        self.record()
        if self.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": self.finish_reason,
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None}
            choice["finish_reason"] = self.finish_reason
        doc = {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.routes.model.name,
            "choices": [choice],
            "usage": self.usage(),
        }
        await respond(send, 200, orjson.dumps(doc))

    def _chunk(self, delta: dict[str, Any] | str, finish: str | None) -> bytes:
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
            kind = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish}
            kind = "text_completion"
        doc = {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.routes.model.name,
            "choices": [choice],
        }
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    async def stream(self, send: Send, *, include_usage: bool) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        error = ""
        try:
            if self.chat:
                await _event(send, self._chunk({"role": "assistant", "content": ""}, None))
            async for piece in self.pieces():
                if piece:
                    delta = {"content": piece} if self.chat else piece
                    await _event(send, self._chunk(delta, None))
            await _event(send, self._chunk({} if self.chat else "", self.finish_reason))
            if include_usage:
                doc: dict[str, Any] = {
                    "id": self.id,
                    "object": "chat.completion.chunk" if self.chat else "text_completion",
                    "created": self.created,
                    "model": self.routes.model.name,
                    "choices": [],
                    "usage": self.usage(),
                }
                await _event(send, b"data: " + orjson.dumps(doc) + b"\n\n")
        except Exception as exc:
            error = type(exc).__name__
            log.exception("generation on model %s failed mid-stream", self.routes.model.name)
            message = exc.message if isinstance(exc, KaipError) else "generation failed"
            await _event(send, b"data: " + _error_doc(message, "server_error") + b"\n\n")
        finally:
            self.record(error)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _event(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})

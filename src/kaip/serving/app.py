"""The model server's ASGI application: routes, the OIP v2 handlers and the one error handler.

``POST /v2/models/{model}[/versions/{v}]/infer`` for the served model is matched by one dict
lookup and handled without any framework in between; every other route is matched by path
segments. Every :class:`~kaip.errors.KaipError` becomes its ``http_status`` and an
``{"error": "..."}`` body (OpenAI routes: an OpenAI error object); anything else becomes a 500
and a logged traceback. Inference logic lives in :mod:`kaip.serving.dataplane`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from kaip import __version__
from kaip.errors import (
    InferenceError,
    KaipError,
    ModelNotFoundError,
    OverloadedError,
    UnsupportedExtensionError,
)
from kaip.protocol.extensions import (
    SUPPORTED,
    kserve_v1_message,
    unsupported_model_action,
    unsupported_route,
)
from kaip.protocol.model_paths import guess_model_name, split_model_path, unknown_model_message
from kaip.serving import openapi
from kaip.serving.asgi import (
    ClientDisconnected,
    Message,
    Receive,
    Scope,
    Send,
    error_headers,
    read_body,
    respond,
)
from kaip.serving.codec import check_datatypes, decode_request, encode_response
from kaip.serving.dataplane import ServedModel
from kaip.serving.openai_api import OpenAIRoutes, openai_error
from kaip.serving.profiling import PROFILE_PATH, Profiling
from kaip.spec.kinds import DEFAULT_MAX_TOKENS
from kaip.telemetry import SPAN_INFER

log = logging.getLogger(__name__)
OIP = "oip-v2"
_OCTET = b"application/octet-stream"
_INFER_ROUTE = "/v2/models/{model}/infer"
_CLOSE = (b"connection", b"close")
DECODE_INLINE_BYTES = 256 * 1024  # larger request bodies are decoded on a thread


class MethodNotAllowedError(InferenceError):
    http_status = 405


class OpenAIHandler(Protocol):
    """What answers ``/v1/*``: kaip's own OpenAI routes, or the relay to an engine."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None: ...

    def wedged(self) -> str | None: ...

    def close(self) -> None: ...


def error_body(exc: KaipError) -> bytes:
    return orjson.dumps({"error": exc.message})


class ServingApp:
    """ASGI app serving one model over OIP v2 (and the OpenAI API when enabled).

    The model answers under each of its served names (``serve.names``), which may contain
    ``/``; see :mod:`kaip.protocol.model_paths`.
    """

    def __init__(
        self,
        model: ServedModel,
        *,
        max_request_bytes: int,
        openai: bool = False,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        generation_workers: int = 4,
        max_waiting: int = 1024,
        profile_token: str | None = None,
        openai_handler: OpenAIHandler | None = None,
    ) -> None:
        self.model = model
        self.profiling = Profiling(profile_token, f"{model.names[0]} revision {model.revision}")
        self.max_request_bytes = max_request_bytes
        self.openai: OpenAIHandler | None = (
            openai_handler
            if openai_handler is not None
            else OpenAIRoutes(
                model,
                max_request_bytes,
                max_tokens=max_tokens,
                generation_workers=generation_workers,
                max_waiting=max_waiting,
            )
            if openai
            else None
        )
        self._names = frozenset(model.names)
        self._infer_paths: dict[str, str] = {}
        for name in model.names:
            base = f"/v2/models/{name}"
            self._infer_paths[f"{base}/infer"] = name
            self._infer_paths[f"{base}/versions/{model.revision}/infer"] = name
        self._openapi = orjson.dumps(openapi.document(model.names[0], model.revision))
        self.refresh_metrics: Callable[[], Awaitable[None]] | None = None
        """Called before each ``/metrics`` answer (an engine's metrics are read then)."""
        self.draining = False
        """Set on SIGTERM (server.py): every response says ``Connection: close`` and readiness
        turns 503, so keep-alive clients finish on this replica and reconnect elsewhere."""
        self._decoder = ThreadPoolExecutor(2, thread_name_prefix="kaip-decode")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        if self.draining:
            send = _closing(send)
        name = self._infer_paths.get(scope["path"])
        if name is not None and scope["method"] == "POST":
            await self._infer(scope, receive, send, name)
            return
        await self._route(scope, receive, send)

    # -- the hot path ----------------------------------------------------------------------------

    async def _infer(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        started = time.perf_counter()
        model = self.model
        metrics = model.metrics
        metrics.inflight.inc()
        header_length = content_length = encoding = traceparent = None
        for key, value in scope["headers"]:  # ASGI: lower-case names
            if key == b"content-length":
                content_length = value
            elif key == b"inference-header-content-length":
                header_length = value
            elif key == b"content-encoding":
                encoding = value
            elif key == b"traceparent":  # two are none (W3C Trace Context: sole_traceparent)
                traceparent = value if traceparent is None else b""
        tracing = model.tracing
        span = (
            tracing.begin(traceparent or b"", SPAN_INFER, _INFER_ROUTE)
            if tracing is not None and (traceparent or tracing.roots)
            else None
        )
        status = 200
        decode_s = encode_s = 0.0
        try:
            body = await read_body(receive, self.max_request_bytes, content_length, encoding)
            decoding = time.perf_counter()
            split = _int_header(header_length)
            if len(body) < DECODE_INLINE_BYTES:
                request = decode_request(body, split, model.check_datatype)
            else:  # decoding megabytes would hold up every other request: a thread does it,
                # once the datatypes are known to fit (read without decoding the data)
                check_datatypes(body, split, model.check_datatype)
                request = await asyncio.get_running_loop().run_in_executor(
                    self._decoder, decode_request, body, split, model.check_datatype
                )
            decode_s = time.perf_counter() - decoding
            outputs = await model.infer(request, span)
            encoding_at = time.perf_counter()
            selected = model.select_outputs(request, outputs)
            payload, json_length = encode_response(name, model.revision, request.id, selected)
            encode_s = time.perf_counter() - encoding_at
            if json_length is None:
                await respond(send, 200, payload)
            else:
                await respond(
                    send,
                    200,
                    payload,
                    _OCTET,
                    [(b"inference-header-content-length", b"%d" % json_length)],
                )
        except KaipError as exc:
            status = exc.http_status
            await respond(send, status, error_body(exc), extra=error_headers(exc))
        except ClientDisconnected:
            status = 499
        except Exception:
            status = 500
            log.exception("infer on model %s failed", model.name)
            await respond(send, 500, orjson.dumps({"error": "internal error; see server log"}))
        finally:
            metrics.inflight.dec()
            seconds = time.perf_counter() - started
            metrics.observe_request(OIP, status, seconds)
            if status != 499:
                model.stats.request_done(status == 200, seconds, decode_s, encode_s)
            if span is not None and tracing is not None:
                tracing.end(span, status)

    # -- everything else -------------------------------------------------------------------------

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith("/v1/"):
            await self._openai(scope, receive, send)
            return
        try:
            if path == PROFILE_PATH:
                await self.profiling.handle(scope, send)
                return
            handler = self._match(method, path)
            await handler(scope, receive, send)
        except KaipError as exc:
            await respond(send, exc.http_status, error_body(exc), extra=error_headers(exc))
        except ClientDisconnected:
            pass
        except Exception:
            log.exception("%s %s failed", method, path)
            await respond(send, 500, orjson.dumps({"error": "internal error; see server log"}))

    async def _openai(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every ``/v1/`` answer is OpenAI-shaped, errors included, even with the API off."""
        path: str = scope["path"]
        kserve_v1 = kserve_v1_message(path)
        if self.openai is not None and kserve_v1 is None:
            # A generation is a request being served too, however long it streams: the gauge the
            # autoscaler and an InferencePool's endpoint picker read (queued and running).
            counted = scope["method"] == "POST"
            inflight = self.model.metrics.inflight
            if counted:
                inflight.inc()
            try:
                await self.openai.handle(scope, receive, send)
            finally:
                if counted:
                    inflight.dec()
            return
        error: KaipError = (
            UnsupportedExtensionError(kserve_v1)
            if kserve_v1 is not None
            else ModelNotFoundError(
                f"{path}: the OpenAI API is off for model {self.model.names[0]!r}; add 'openai' "
                "to serve.protocols"
            )
        )
        await respond(send, error.http_status, openai_error(error))

    def _match(self, method: str, path: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        simple: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {
            "/v2/health/live": self._live,
            "/v2/health/ready": self._ready,
            "/v2": self._server_metadata,
            "/v2/": self._server_metadata,
            "/v2/models": self._model_list,
            "/v2/models/": self._model_list,
            "/v2/models/stats": self._all_stats,
            "/metrics": self._metrics,
            "/openapi.json": self._openapi_doc,
        }
        handler = simple.get(path)
        if handler is not None:
            _allow(method, "GET")
            return handler
        if path.startswith("/v2/models/"):
            return self._model_route(method, path)
        unsupported = unsupported_route(path)
        if unsupported is not None:
            raise UnsupportedExtensionError(unsupported)
        raise ModelNotFoundError(f"no route {method} {path}; see /openapi.json")

    def _model_route(
        self, method: str, path: str
    ) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        rest = path.removeprefix("/v2/models/").rstrip("/")
        found = split_model_path(rest, self._names.__contains__)
        if found is None:
            served = ", ".join(repr(n) for n in self.model.names)
            raise ModelNotFoundError(
                f"{unknown_model_message(guess_model_name(rest))}; this server serves {served}"
            )
        if found.version is not None and found.version != self.model.revision:
            raise ModelNotFoundError(
                f"{unknown_model_message(found.name, found.version)}; it serves version "
                f"{self.model.revision!r}"
            )
        name, action = found.name, found.action

        async def metadata(scope: Scope, receive: Receive, send: Send) -> None:
            await self._model_metadata(send, name)

        async def ready(scope: Scope, receive: Receive, send: Send) -> None:
            await self._model_ready(send, name)

        async def stats(scope: Scope, receive: Receive, send: Send) -> None:
            await self._stats(send, name)

        async def infer(scope: Scope, receive: Receive, send: Send) -> None:
            await self._infer(scope, receive, send, name)

        routes = {"": ("GET", metadata), "ready": ("GET", ready), "stats": ("GET", stats),
                  "infer": ("POST", infer)}  # fmt: skip
        route = routes.get(action)
        if route is not None:
            _allow(method, route[0])
            return route[1]
        unsupported = unsupported_model_action(action, path)
        if unsupported is not None:
            raise UnsupportedExtensionError(unsupported)
        raise ModelNotFoundError(f"no route {method} {path}; see /openapi.json")

    async def _live(self, scope: Scope, receive: Receive, send: Send) -> None:
        wedged = self.openai.wedged() if self.openai is not None else None
        if wedged is None:
            await respond(send, 200, b'{"live":true}')
        else:
            await respond(send, 503, orjson.dumps({"live": False, "reason": wedged}))

    def close(self) -> None:
        """Release the model and the generation threads (the server is stopping)."""
        if self.openai is not None:
            self.openai.close()
        self._decoder.shutdown(wait=False, cancel_futures=True)
        self.model.close()

    async def _ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        ready = self.model.ready and not self.draining
        await respond(send, 200 if ready else 503, orjson.dumps({"ready": ready}))

    async def _model_ready(self, send: Send, name: str) -> None:
        ready = self.model.ready
        body = {"name": name, "ready": ready}
        await respond(send, 200 if ready else 503, orjson.dumps(body))

    async def _server_metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = [*SUPPORTED, "openai"] if self.openai else list(SUPPORTED)
        body = {"name": "kaip", "version": __version__, "extensions": extensions}
        await respond(send, 200, orjson.dumps(body))

    async def _model_metadata(self, send: Send, name: str) -> None:
        if not self.model.ready:
            raise OverloadedError(f"model {name!r} is still loading", retry_after=1.0)
        await respond(send, 200, orjson.dumps(self.model.metadata(name)))

    async def _stats(self, send: Send, name: str) -> None:
        entry = self.model.stats.model_stat(name, self.model.revision)
        await respond(send, 200, orjson.dumps({"model_stats": [entry]}))

    async def _all_stats(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._stats(send, self.model.names[0])

    async def _model_list(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 200, orjson.dumps({"models": list(self.model.names)}))

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.refresh_metrics is not None:
            await self.refresh_metrics()
        await respond(send, 200, self.model.metrics.exposition(), CONTENT_TYPE_LATEST.encode())

    async def _openapi_doc(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 200, self._openapi)


def _closing(send: Send) -> Send:
    """``send`` with ``Connection: close`` added to the response head (uvicorn then closes the
    connection once the response is complete)."""

    async def closing_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), _CLOSE]}
        await send(message)

    return closing_send


def _allow(method: str, allowed: str) -> None:
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        raise MethodNotAllowedError(f"method {method} is not allowed here; use {allowed}")


def _int_header(value: bytes | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InferenceError("Inference-Header-Content-Length is not a number") from None


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


__all__ = ["ServingApp"]

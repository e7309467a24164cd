"""A Model served by an engine's own OpenAI server (``serve.engine``): ``/v1/*`` relayed to it.

The engine's process (started, waited for, watched) is :mod:`kaip.serving.engine_process`'s;
the rules here, in the order a request meets them:

- **Relay.** A request to ``/v1/*`` is passed on as sent (method, path, query, body, headers but
  hop-by-hop ones and ``Expect``), over kept-alive connections (:mod:`kaip.serving.engine_link`:
  once more on a new one when the engine closed the one it went on before answering), except
  two changes to a generation's JSON body: ``model`` becomes the name the engine serves under
  (the first of ``serve.names``; the client may use any of them), and a streamed one asks for
  ``stream_options.include_usage`` (the usage-only chunk the client did not ask for is then
  dropped from what it gets back). The answer comes back as the engine sends it: a stream as
  its events arrive, never collected: each piece the engine's connection reads is written to
  the client in its read callback, straight to the connection (the model server's
  :class:`~kaip.serving.protocol.DirectBody`; under another ASGI server, an ASGI send per read,
  those already read when the relay comes for more going on in one), and while the client
  cannot take more the engine is not read. A client that goes away cancels the request to the
  engine (the connection closes, and the engine aborts the generation).
- **Count.** On each generation the relay records what the built-in runtime records: the GenAI
  histograms (time to first token = first event with text; output tokens from the engine's
  ``usage``, else one per event with text), requests by status, in-flight requests. Parsing stays
  on the side: a body is read once, the events only looked at.

Never loads a model itself and never rewrites an answer's text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Final

import httpx
import orjson

from kaip.errors import EngineError, InferenceError, KaipError, ModelNotFoundError
from kaip.protocol.upstream import HOP_BY_HOP
from kaip.serving.asgi import (
    ClientDisconnected,
    Headers,
    Receive,
    Scope,
    Send,
    error_headers,
    read_body,
    respond,
)
from kaip.serving.engine_link import EngineAnswer, EngineFailure, EngineLink
from kaip.serving.engines import MAX_METRICS_BYTES, EngineProfile, EngineSnapshot, translate
from kaip.serving.metrics import GenAIMetrics, ServerMetrics
from kaip.serving.openai_api import PROTOCOL, openai_error, unless_disconnected
from kaip.serving.protocol import DIRECT_BODY, DirectBody
from kaip.serving.stream_watch import StreamWatch

log = logging.getLogger(__name__)
METRICS_TIMEOUT_S: Final = 2.0
GENERATIONS: Final = {
    "/v1/completions": "text_completion",
    "/v1/chat/completions": "chat",
    "/v1/responses": "chat",
    "/v1/embeddings": "embeddings",
}
_HOP_BY_HOP: Final = HOP_BY_HOP | {b"host", b"content-length", b"expect"}
"""Not passed on either way: the relay sets framing and host itself, and the client's body is
already read whole (an ``expect: 100-continue`` would ask the engine to wait for it)."""
_NONE: Final[Mapping[str, DirectBody]] = {}


class EngineRoutes:
    """``/v1/*`` of a Model served by an engine: relayed to it (module docstring: Relay, Count)."""

    def __init__(
        self,
        *,
        model: str,
        names: Sequence[str],
        metrics: ServerMetrics,
        engine: EngineProfile,
        max_request_bytes: int,
        timeout: float,
    ) -> None:
        self.model = model
        self.names = tuple(names)
        self.metrics = metrics
        self.engine = engine
        self.max_request_bytes = max_request_bytes
        self.timeout = timeout
        self.genai = GenAIMetrics(metrics)
        self.base_url: str | None = None
        """The engine's address, once it is healthy."""
        self.failed: str | None = None
        """Why the engine cannot serve any more (it exited), or None."""
        self.snapshot = EngineSnapshot()
        self._link: EngineLink | None = None
        """The data path's connections to the engine (health and /metrics: :attr:`client`)."""
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(max_keepalive_connections=4),  # health and /metrics only
            trust_env=False,
        )

    @property
    def client(self) -> httpx.AsyncClient:
        return self._client

    def wedged(self) -> str | None:
        """Never: an engine that fails makes the replica unready (readiness), not dead
        (liveness): a pod's kubelet restarts the engine's container, not kaip's."""
        return None

    def close(self) -> None:
        """Nothing to release synchronously: :meth:`aclose` closes the connections."""

    def use(self, url: str) -> None:
        """Relay to the engine at ``url`` from now on (it is healthy): once, where its URL
        becomes known, not per request."""
        if self._link is not None:
            self._link.close()
        self.base_url = url
        self._link = EngineLink(url, self.timeout)

    async def aclose(self) -> None:
        if self._link is not None:
            self._link.close()
        await self._client.aclose()

    # -- /metrics --------------------------------------------------------------------------------

    async def refresh_metrics(self) -> None:
        """Read the engine's /metrics into :attr:`snapshot` (kept as it was when it cannot)."""
        base, path = self.base_url, self.engine.metrics_path
        if base is None or path is None or self.failed is not None:
            return
        try:
            async with self._client.stream(
                "GET", base + path, timeout=METRICS_TIMEOUT_S
            ) as response:
                if response.status_code != 200:
                    return
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_METRICS_BYTES:
                        log.warning("engine /metrics is over %d bytes; not read", len(body))
                        return
            self.snapshot = translate(body.decode("utf-8", "replace"), self.engine)
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("engine /metrics not read: %s", exc)

    # -- /v1 ---------------------------------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 200
        try:
            if self.failed is not None:
                raise EngineError(f"model {self.model!r} cannot serve: {self.failed}")
            link = self._link
            if link is None:
                raise EngineError(f"model {self.model!r}: its engine is still starting")
            body, operation, stream, drop_usage = await self._read(scope, receive)
            status = await unless_disconnected(
                self._forward(link, scope, send, body, operation, stream, drop_usage), receive
            )
        except KaipError as exc:
            status = exc.http_status
            await respond(send, status, openai_error(exc), extra=error_headers(exc))
        except ClientDisconnected:
            status = 499
        finally:
            self.metrics.observe_request(PROTOCOL, status, time.perf_counter() - started)

    async def _read(self, scope: Scope, receive: Receive) -> tuple[bytes, str | None, bool, bool]:
        """The body to send on, the GenAI operation (None: not a generation), whether it
        streams and whether to drop the usage chunk from the answer."""
        method: str = scope["method"]
        if method in ("GET", "HEAD"):
            return b"", None, False, False
        content_length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                content_length = value
        body = await read_body(receive, self.max_request_bytes, content_length)
        operation = GENERATIONS.get(scope["path"].rstrip("/")) if method == "POST" else None
        if operation is None:
            return body, None, False, False
        body, stream, drop_usage = self._prepare(body, operation)
        return body, operation, stream, drop_usage

    async def _forward(
        self,
        link: EngineLink,
        scope: Scope,
        send: Send,
        body: bytes,
        operation: str | None,
        stream: bool,
        drop_usage: bool,
    ) -> int:
        path: str = scope["path"]
        method: str = scope["method"]
        target: bytes = scope.get("raw_path") or path.encode()
        if query := scope.get("query_string"):
            target += b"?" + query
        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP_BY_HOP]
        head = link.request_head(method.encode(), target, headers, len(body))
        started = time.perf_counter()
        try:
            answer = await link.open(head, body, head_request=method == "HEAD")
        except EngineFailure as exc:
            self._record(operation, started, None, 0, exc.error_type)
            raise EngineError(self._failure(f"did not answer {method} {path}", exc)) from None
        error = ""
        watch = StreamWatch(drop_usage_chunk=drop_usage)
        status = answer.status
        recorded = False

        def record() -> None:
            """Once, before the last bytes go out (a client that read them may scrape next)."""
            nonlocal recorded, error
            if recorded:
                return
            recorded = True
            if status >= 400 and not error:
                error = str(status)
            first = None if watch.first_text_at is None else watch.first_text_at - started
            # a whole answer: the time of its first token is not known, only the duration
            self._record(operation, started, first if stream else None, watch.tokens, error)

        try:
            if stream and status == 200:
                await send(
                    {"type": "http.response.start", "status": status,
                     "headers": _response_headers(answer.headers)}
                )  # fmt: skip
                direct: DirectBody | None = scope.get("extensions", _NONE).get(DIRECT_BODY)
                try:
                    if direct is not None and direct.usable():
                        await _hand_on(answer, watch, direct)
                    else:
                        while chunk := await answer.read():
                            out = watch.feed(chunk)
                            if out:
                                await send(
                                    {"type": "http.response.body", "body": out, "more_body": True}
                                )
                    last = watch.flush()
                except EngineFailure as exc:  # the engine broke off: say so, end the stream
                    error = exc.error_type
                    message = self._failure("broke off the stream", exc)
                    last = b"data: " + openai_error(EngineError(message)) + b"\n\n"
                    status = 502
                record()
                await send({"type": "http.response.body", "body": last, "more_body": False})
            else:
                parts = []
                try:
                    while chunk := await answer.read():
                        parts.append(chunk)
                except EngineFailure as exc:
                    error = exc.error_type
                    raise EngineError(
                        self._failure(f"broke off its answer to {path}", exc)
                    ) from None
                whole = parts[0] if len(parts) == 1 else b"".join(parts)
                if operation is not None and status == 200:
                    watch.usage_tokens = _completion_tokens(whole, answer.headers)
                headers = [
                    *_response_headers(answer.headers),
                    (b"content-length", b"%d" % len(whole)),
                ]
                record()
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": whole, "more_body": False})
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        finally:
            answer.close()
            record()
        return status

    def _failure(self, what: str, exc: EngineFailure) -> str:
        if exc.timed_out:
            return (
                f"engine {self.engine.name!r} {what}: nothing came for serve.timeoutSeconds "
                f"({self.timeout:g} s); raise it for long generations, or stream"
            )
        return f"engine {self.engine.name!r} {what}: {exc.reason}"

    def _prepare(self, body: bytes, operation: str) -> tuple[bytes, bool, bool]:
        """The body to send on, whether it streams, whether to drop the usage chunk."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InferenceError(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise InferenceError("the request body must be a JSON object")
        name = doc.get("model")
        if not isinstance(name, str) or name not in self.names:
            served = ", ".join(repr(n) for n in self.names)
            raise ModelNotFoundError(
                f"The model {name!r} does not exist; this server serves {served}"
            )
        changed = name != self.names[0]
        doc["model"] = self.names[0]
        stream = doc.get("stream") is True
        drop_usage = False
        if stream and operation in ("chat", "text_completion") and "input" not in doc:
            options = doc.get("stream_options")
            if not isinstance(options, dict) or options.get("include_usage") is not True:
                drop_usage = True
                doc["stream_options"] = {
                    **(options if isinstance(options, dict) else {}),
                    "include_usage": True,
                }
                changed = True
        return (orjson.dumps(doc) if changed else body), stream, drop_usage

    def _record(
        self, operation: str | None, started: float, ttft: float | None, tokens: int, error: str
    ) -> None:
        if operation is None:
            return
        self.genai.record(
            operation,
            self.model,
            time.perf_counter() - started,
            ttft=ttft,
            tokens=tokens,
            error_type=error,
        )


async def _hand_on(answer: EngineAnswer, watch: StreamWatch, direct: DirectBody) -> None:
    """A stream's events, each piece as the engine's connection reads it, straight to the
    client (module docstring: Relay); returns at the end of the engine's answer."""

    def forward(chunk: bytes) -> bool:
        out = watch.feed(chunk)
        return direct.write(out) if out else True

    direct.on_writable(answer.resume)
    try:
        answer.stream_to(forward)
        await answer.finished()
    finally:
        direct.on_writable(None)


def _response_headers(headers: Headers) -> Headers:
    return [(key.lower(), value) for key, value in headers if key.lower() not in _HOP_BY_HOP]


def _completion_tokens(body: bytes, headers: Headers) -> int:
    for key, value in headers:
        if key.lower() == b"content-encoding" and value.strip().lower() != b"identity":
            return 0  # compressed as sent: the count is left out rather than the body decoded
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0
    usage = doc.get("usage") if isinstance(doc, dict) else None
    if isinstance(usage, dict):
        tokens = usage.get("completion_tokens", usage.get("output_tokens"))
        if isinstance(tokens, int):
            return tokens
    return 0


__all__ = ["EngineRoutes"]

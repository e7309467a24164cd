"""Raw ASGI primitives the server's routes share: read a bounded body, send a whole response.

Kept to what the hot path needs (no request objects, no middleware stack): a few dict
operations per request. Never decides routes or formats errors.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from kaip.errors import InferenceError, KaipError, OverloadedError, PayloadTooLargeError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"


class ClientDisconnected(Exception):
    """The client went away before its body arrived."""


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the request body is larger than the model's maxRequestBytes ({limit} bytes); send "
        "fewer rows per request or raise serve.maxRequestBytes"
    )


async def read_body(
    receive: Receive, limit: int, content_length: bytes | None, encoding: bytes | None = None
) -> bytes:
    """The whole body, refusing with 413 as soon as it is known to exceed ``limit`` bytes."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise InferenceError("Content-Length is not a number") from None
        if declared > limit:
            raise _too_large(limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected
    body: bytes = message.get("body", b"")
    if message.get("more_body", False):
        parts = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
    elif len(body) > limit:
        raise _too_large(limit)
    if encoding is not None and encoding not in (b"identity", b""):
        body = _decompress(body, encoding, limit)
    return body


def _decompress(body: bytes, encoding: bytes, limit: int) -> bytes:
    if encoding == b"gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == b"deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise InferenceError(
            f"Content-Encoding {encoding.decode('latin-1')!r} is not supported: use gzip, "
            "deflate or none"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InferenceError(f"the body is not valid {encoding.decode()}: {exc}") from None
    if len(out) > limit:
        raise _too_large(limit)
    return out


def error_headers(exc: KaipError) -> list[tuple[bytes, bytes]]:
    """``Retry-After`` for an overload; nothing for other errors."""
    if isinstance(exc, OverloadedError):
        return [(b"retry-after", b"%d" % max(1, round(exc.retry_after)))]
    return []


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    headers: Headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

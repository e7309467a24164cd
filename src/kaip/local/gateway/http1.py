"""HTTP/1.1 wire pieces shared by both sides of the proxy: head building and header filtering.

Pure byte manipulation: request heads for replicas, response heads for clients, small JSON bodies
for the answers the gateway gives itself. Never does I/O and never parses (httptools does).
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

import orjson

from kaip.protocol.upstream import HOP_BY_HOP, Headers

# Set by the gateway from what it saw itself: what a client sends under these names is dropped.
FORWARDED = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
    }
)
# Rewritten by the gateway on the way to a replica.
_REQUEST_REPLACED = HOP_BY_HOP | FORWARDED | {b"content-length", b"traceparent", b"expect"}
# ... and when the client's trace does not go on, its tracestate (kaip.local.gateway.trace).
_REQUEST_REPLACED_RESTARTED = _REQUEST_REPLACED | {b"tracestate"}

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


def connection_options(headers: Headers) -> frozenset[bytes]:
    """The header names a request's ``Connection`` header lists (hop-by-hop for this hop only)."""
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    return frozenset(named)


def request_head(
    method: bytes,
    target: bytes,
    headers: Headers,
    body_length: int,
    traceparent: bytes,
    extra: Iterable[tuple[bytes, bytes]] = (),
    client: bytes = b"",
    upgrade: bytes = b"",
    tracestate: bool = False,
) -> bytes:
    """The head of a request to a replica: the client's end-to-end headers, our framing.

    Hop-by-hop headers, those the client's ``Connection`` names, every ``X-Forwarded-*`` (and
    ``Forwarded``) the client sent and the portal's session cookie are dropped; the gateway sets
    ``X-Forwarded-For`` (the ``client`` address), ``-Proto`` and ``-Host`` itself, and
    ``extra`` adds the rest. ``upgrade`` (e.g. ``websocket``) asks this hop to upgrade.
    ``traceparent`` is the last header (``b""``: none; see :mod:`kaip.local.gateway.trace`);
    the client's ``tracestate`` is kept only when ``tracestate`` says its trace goes on.
    """
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    host = b""
    dropped = connection_options(headers)
    replaced = _REQUEST_REPLACED if tracestate else _REQUEST_REPLACED_RESTARTED
    for name, value in headers:
        lower = name.lower()
        if lower in replaced or lower in dropped:
            continue
        if lower == b"host":
            host = value
        elif lower == b"cookie" and _PORTAL_COOKIE in value:
            value = without_portal_cookie(value)
            if not value:
                continue
        parts += (name, b": ", value, b"\r\n")
    if not host:
        parts.append(b"host: 127.0.0.1\r\n")
    else:
        parts += (b"x-forwarded-host: ", host, b"\r\n")
    if client:
        parts += (b"x-forwarded-for: ", client, b"\r\n")
    parts.append(b"x-forwarded-proto: http\r\n")
    for name, value in extra:
        parts += (name, b": ", value, b"\r\n")
    if upgrade:
        parts += (b"connection: upgrade\r\nupgrade: ", upgrade, b"\r\n")
    if body_length or method not in (b"GET", b"HEAD", b"DELETE", b"OPTIONS"):
        parts.append(b"content-length: %d\r\n" % body_length)
    if traceparent:
        parts += (b"traceparent: ", traceparent, b"\r\n\r\n")
    else:
        parts.append(b"\r\n")
    return b"".join(parts)


PORTAL_COOKIE = "kaip_portal"
"""The portal's session cookie (control port). Browsers send a host's cookies to every port of
it, so the traffic port's Apps would get it too: the gateway never passes it on."""
_PORTAL_COOKIE = PORTAL_COOKIE.encode()


def without_portal_cookie(value: bytes) -> bytes:
    """A ``Cookie`` header's value minus the portal's session cookie (empty if nothing is left)."""
    kept = [p for p in value.split(b";") if p.strip().partition(b"=")[0] != _PORTAL_COOKIE]
    return b";".join(kept).strip()


def json_body(payload: object) -> bytes:
    return orjson.dumps(payload)


def error_payload(
    message: str,
    *,
    openai: bool = False,
    code: str | None = None,
    error_type: str = "invalid_request_error",
) -> object:
    """``{"error": "..."}`` for OIP v2 and apps; the OpenAI error object for ``/v1``."""
    if openai:
        return {
            "error": {
                "message": message,
                "type": error_type,
                "param": None,
                "code": code,
            }
        }
    return {"error": message}

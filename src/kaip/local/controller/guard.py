"""The control port's front door: every request is checked here before any handler sees it.

An ASGI middleware that refuses, in this order and each with one JSON ``{"error": ...}``:

1. a ``Host`` that is not a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``) or a name
   given with ``kaip up --allowed-host`` -- 421: a page on a name that an attacker re-pointed at
   127.0.0.1 (DNS rebinding) sends its own name here;
2. an ``Origin`` that is not this very origin (``http://`` or ``https://`` plus the Host the
   request came to), and ``Sec-Fetch-Site: cross-site`` -- 403: a page elsewhere, an App on the
   traffic port included (another port is another origin), may not drive or read the API;
3. a request without a valid credential (:mod:`~kaip.local.controller.auth`) -- 401, reads
   included;
4. a ``POST``/``PUT``/``PATCH``/``DELETE`` whose body is not ``application/json`` -- 415: no
   form or ``text/plain`` request a browser would send without asking first;
5. a body over ``max_body_bytes`` -- 413, counted as it arrives, whatever Content-Length said.

What passes gets the principal in ``scope["state"]["principal"]`` and answers that are never
cached, sniffed or framed. The port answers to no WebSocket. Never routes and never knows what
the API does; the role each action needs is the handlers' to check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.datastructures import Headers

from kaip.errors import (
    AccessError,
    ForbiddenError,
    KaipError,
    PayloadTooLargeError,
    UnsupportedMediaError,
    WrongHostError,
)
from kaip.local.controller.auth import Authenticator

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_BODY_BYTES = 1 << 20
SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
]


@dataclass(frozen=True)
class GuardPolicy:
    """What the front door lets through."""

    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    """Names besides the loopback ones, lower case, without a port."""
    max_body_bytes: int = MAX_BODY_BYTES
    credential_hint: str = "send 'Authorization: Bearer <token>'"
    """How to authenticate, said in every 401."""

    def names(self) -> frozenset[str]:
        return LOOPBACK_NAMES | self.allowed_hosts


def host_name(host: str) -> str | None:
    """The name of a Host header value without its port (``[::1]:8081`` -> ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name
    name, colon, port = host.rpartition(":")
    if not colon:
        return host or None
    return name if port.isdigit() and name and ":" not in name else None


def normalize_hosts(names: Iterable[str]) -> frozenset[str]:
    """``--allowed-host`` values as the guard compares them (a port given is ignored)."""
    out = set()
    for raw in names:
        name = host_name(raw)
        if name is None:
            raise ValueError(f"{raw!r} is not a host name")
        out.add(name)
    return frozenset(out)


class ControlGuard:
    """Wraps the control API's ASGI app; see the module docstring for what it refuses."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, policy: GuardPolicy) -> None:
        self._app = app
        self._authenticator = authenticator
        self._policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._app(scope, receive, send)
            return
        if scope["type"] != "http":  # a WebSocket: refuse the handshake
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = Headers(scope=scope)
        try:
            principal = self._check(scope, headers)
        except KaipError as exc:
            await send_error(send, exc)
            return
        scope.setdefault("state", {})["principal"] = principal
        limit = self._policy.max_body_bytes
        bounded_receive, secured_send = bounded_io(
            receive, send, limit, lambda: _too_large(limit), SECURITY_HEADERS
        )
        await self._app(scope, bounded_receive, secured_send)

    def _check(self, scope: Scope, headers: Headers) -> Any:
        policy = self._policy
        check_site(headers, policy)
        principal = self._authenticator.authenticate(headers)
        if principal is None:
            given = "a token it does not know" if "authorization" in headers else "no credential"
            raise AccessError(f"the control API needs a credential and got {given}: "
                              f"{policy.credential_hint}")  # fmt: skip
        if scope["method"] in MUTATING:
            media = headers.get("content-type", "").partition(";")[0].strip().lower()
            if media != "application/json":
                got = repr(headers["content-type"]) if "content-type" in headers else "none"
                raise UnsupportedMediaError(
                    f"{scope['method']} {scope['path']} takes a JSON body with "
                    f"'Content-Type: application/json' (got {got})"
                )
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > policy.max_body_bytes:
            raise _too_large(policy.max_body_bytes)
        return principal


def check_site(headers: Headers, policy: GuardPolicy) -> None:
    """Refuses a Host that is not ours (421) and a request from another origin or site (403)."""
    host = headers.get("host", "")
    name = host_name(host)
    if name is None or name not in policy.names():
        allowed = ", ".join(sorted(f"[{n}]" if ":" in n else n for n in policy.names()))
        shown = repr(host) if host else "no Host header"
        raise WrongHostError(
            f"this is kaip's control port, which answers to {allowed}, not to {shown}: "
            "to reach it by another name, start kaip up with --allowed-host NAME"
        )
    origin = headers.get("origin")
    own = (f"http://{host.strip().lower()}", f"https://{host.strip().lower()}")
    if origin is not None and origin.strip().lower() not in own:
        raise ForbiddenError(
            f"the control API takes requests from its own pages only, not from {origin!r}"
        )
    if origin is None and headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise ForbiddenError("the control API takes no requests from other sites' pages")


def bounded_io(
    receive: Receive,
    send: Send,
    limit: int,
    too_large: Callable[[], KaipError],
    headers: list[tuple[bytes, bytes]],
) -> tuple[Receive, Send]:
    """``receive`` that raises ``too_large()`` past ``limit`` body bytes in all, and ``send``
    that adds ``headers`` to every response start."""
    received = 0

    async def bounded_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large()
        return message

    async def secured_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *headers]
        await send(message)

    return bounded_receive, secured_send


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"the body is over {limit} bytes, the most the control API takes")


async def send_error(send: Send, error: KaipError) -> None:
    body = orjson.dumps({"error": error.message})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
    ]
    if isinstance(error, AccessError) and type(error) is AccessError:
        headers.append((b"www-authenticate", b'Bearer realm="kaip"'))
    await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

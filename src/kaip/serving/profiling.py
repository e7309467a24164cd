"""``POST /_kaip/profile`` on a replica: an authenticated, bounded run of the sampling profiler.

Owns the endpoint's rules: off (404) unless the process was given a token
(``KAIP_PROFILE_TOKEN``, which ``kaip up`` sets per run for its Model replicas); the request must
carry ``Authorization: Bearer TOKEN`` (compared in constant time, else 401); ``seconds`` (default
10, at most 120), ``rate`` (Hz, default 100, at most 250) and ``format`` (``speedscope`` or
``collapsed``) and ``mode`` (``cpu``: threads that ran; ``wall``: every thread) come from the
query; one profile at a time (409). The sampling runs on a thread
of its own, never on the event loop. The sampler itself is :mod:`kaip.serving.profiler`.
"""

from __future__ import annotations

import asyncio
import hmac
from urllib.parse import parse_qs

import orjson

from kaip.errors import AccessError, InferenceError, KaipError, ModelNotFoundError
from kaip.serving.asgi import Scope, Send, header, respond
from kaip.serving.profiler import MAX_RATE_HZ, MAX_SECONDS, Sampler

PROFILE_PATH = "/_kaip/profile"
PROFILE_TOKEN_ENV = "KAIP_PROFILE_TOKEN"
FORMATS = ("speedscope", "collapsed")


class ProfileBusyError(KaipError):
    """Another profile of this replica is running."""

    http_status = 409


class Profiling:
    def __init__(self, token: str | None, name: str) -> None:
        self._token = token.encode() if token else None
        self._name = name
        self._sampler = Sampler()

    async def handle(self, scope: Scope, send: Send) -> None:
        if self._token is None:
            raise ModelNotFoundError(
                f"profiling is off on this replica: it was started without {PROFILE_TOKEN_ENV}"
            )
        given = header(scope, b"authorization") or b""
        if not hmac.compare_digest(given, b"Bearer " + self._token):
            raise AccessError(
                "profiling needs 'Authorization: Bearer TOKEN' with this replica's "
                f"{PROFILE_TOKEN_ENV}; `kaip profile NAME` sends it for you"
            )
        if scope["method"] != "POST":
            raise InferenceError(f"{PROFILE_PATH} takes POST")
        seconds, rate, fmt, mode = _options(scope["query_string"])
        profile = await asyncio.to_thread(self._sampler.run, seconds, rate, mode)
        if profile is None:
            raise ProfileBusyError("another profile of this replica is running; retry after it")
        if fmt == "collapsed":
            text = profile.collapsed().encode()
            await respond(send, 200, text, b"text/plain; charset=utf-8")
            return
        body = profile.speedscope(self._name)
        body["kaip"] = {
            "samples": profile.samples,
            "seconds": profile.seconds,
            "rate_hz": profile.rate_hz,
            "top": profile.top(20),
            "top_self": profile.top_self(),
        }
        await respond(send, 200, orjson.dumps(body))


def _options(query: bytes) -> tuple[float, float, str, str]:
    params = parse_qs(query.decode("latin-1"), max_num_fields=10)

    def number(name: str, default: float, limit: float) -> float:
        values = params.get(name)
        if not values:
            return default
        try:
            value = float(values[0])
        except ValueError:
            value = -1.0
        if not 0 < value <= limit:
            raise InferenceError(f"{name}={values[0]!r}: must be more than 0 and at most {limit:g}")
        return value

    fmt = (params.get("format") or ["speedscope"])[0]
    if fmt not in FORMATS:
        raise InferenceError(f"format={fmt!r}: one of {', '.join(FORMATS)}")
    mode = (params.get("mode") or ["cpu"])[0]
    if mode not in ("cpu", "wall"):
        raise InferenceError(f"mode={mode!r}: cpu (threads that ran) or wall (every thread)")
    return number("seconds", 10.0, MAX_SECONDS), number("rate", 100.0, MAX_RATE_HZ), fmt, mode

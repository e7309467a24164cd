"""Triton's statistics extension on the gateway: ask a revision's replicas, sum what they say.

``GET /v2/models[/{name}[/versions/{v}]]/stats`` through the gateway answers one entry per live
revision (Triton's "version") of each Model asked for, summing the counters of that revision's
ready replicas (:func:`kaip.protocol.statistics.merge_model_stats`). Replicas are asked all at
once, each for at most :data:`FETCH_TIMEOUT_S`; one that does not answer in time, or answers
something else than a 200 with JSON, is left out of the sum (its counters come back with it), so
a hung replica delays the answer but never fails it. A revision with no ready replica (scaled to
zero, starting) shows zeros; asking for stats never starts one. Counters live in the replicas:
those of a replica that stopped (scaled in, restarted) are gone. Never proxies client requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import orjson

from kaip.local.gateway.routes import Backend, CompiledRoute
from kaip.protocol.statistics import merge_model_stats
from kaip.protocol.upstream import Framing, Headers, Outcome, UpstreamPool

log = logging.getLogger("kaip.local.gateway")

FETCH_TIMEOUT_S = 5.0
MAX_STATS_BYTES = 4 * 1024 * 1024  # one replica's answer; a model has few batch sizes


class _Collect:
    """A :class:`~kaip.protocol.upstream.ResponseSink` that keeps a small whole response."""

    def __init__(self) -> None:
        self.status = 0
        self.parts: list[bytes] = []
        self.size = 0
        self.too_large = False

    def response_head(self, status: int, reason: bytes, headers: Headers, framing: Framing) -> None:
        self.status = status

    def response_body(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > MAX_STATS_BYTES:
            self.too_large = True
        else:
            self.parts.append(chunk)

    def response_end(self) -> None:
        pass

    def flush(self) -> None:
        pass


async def _fetch(pool: UpstreamPool, backend: Backend, path: str) -> Any:
    """One replica's ``$model_stat`` for ``path``, or None if it has none to give."""
    key = (backend.host, backend.port)
    try:
        upstream = await asyncio.wait_for(pool.connect(key), FETCH_TIMEOUT_S)
    except (OSError, TimeoutError):
        return None
    sink = _Collect()
    done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    request = (
        f"GET {path} HTTP/1.1\r\nhost: {backend.host}:{backend.port}\r\n"
        "accept: application/json\r\nconnection: close\r\n\r\n"
    ).encode("latin-1")
    upstream.send(request, b"", sink, done, False, FETCH_TIMEOUT_S)
    try:
        outcome = await asyncio.wait_for(done, FETCH_TIMEOUT_S)
    except TimeoutError:
        upstream.abort()
        return None
    finally:
        upstream.close()
    if outcome is not Outcome.OK or sink.status != 200 or sink.too_large:
        log.info("stats of replica %s left out: no usable answer", backend.replica)
        return None
    try:
        doc = orjson.loads(b"".join(sink.parts))
    except orjson.JSONDecodeError:
        return None
    stats = doc.get("model_stats") if isinstance(doc, dict) else None
    return stats[0] if isinstance(stats, list) and len(stats) == 1 else None


async def revision_stats(
    pool: UpstreamPool, route: CompiledRoute, served_name: str, revisions: Sequence[str]
) -> list[dict[str, Any]]:
    """One summed ``$model_stat`` per revision of ``route``, named ``served_name``."""
    fetches: list[tuple[str, asyncio.Task[Any]]] = []
    for revision in revisions:
        path = f"/v2/models/{served_name}/versions/{revision}/stats"
        for backend in route.by_revision.get(revision, ()):
            fetches.append((revision, asyncio.ensure_future(_fetch(pool, backend, path))))
    if fetches:
        await asyncio.wait([task for _, task in fetches])
    parts: dict[str, list[Any]] = {revision: [] for revision in revisions}
    for revision, task in fetches:
        parts[revision].append(task.result())
    return [merge_model_stats(served_name, rev, parts[rev]) for rev in revisions]


def live_revisions(route: CompiledRoute) -> list[str]:
    """The revisions the route knows, by name: those with weight, then any with replicas."""
    known = dict.fromkeys(route.route.weights)
    known.update(dict.fromkeys(sorted(route.by_revision)))
    return list(known)

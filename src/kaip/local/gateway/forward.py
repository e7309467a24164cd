"""Sending one proxied request to a replica, and to another when the first fails before answering.

Owns the retry rule, the replicas' in-flight counts and the ejection of failing replicas. A
request is sent again, to another replica, only while not one byte of its answer has reached the
client. Requests are buffered whole, and kaip treats them as safe to repeat on that condition
(inference is a pure function of the request; Apps behind the gateway get the same at-least-once
delivery as behind any retrying proxy). Three failures qualify: the connection is refused or
times out, the replica closes or resets it before answering (or, for an answer of a small
declared length, before all of it came: such answers are passed on whole), or the replica sends
no response head within the route's response timeout. The last is retried at most once per
request: a second timeout more likely means the request itself is slow (or the revision is
overloaded) than that another replica hangs, and every further try would cost the client a whole
timeout more and the replicas more work. A replica that failed is ejected (skipped while another
is left): for :data:`EJECT_S` after a connection failure, for :data:`EJECT_TIMEOUT_S` after a
timeout, and its connection is aborted, never reused. A timed-out attempt counts as an error of
its replica's revision in the stats, even when another replica then answered, so a canary whose
replicas hang fails its gates.

Which replica: the least busy of the revision's (skipping tried and ejected ones), or on a route
with prefix affinity one chosen by the prompt prefixes each was sent
(:mod:`kaip.local.gateway.prefix`). Retries stay within a pinned revision; a request drawn by
weight for another revision than the canary is also handed to the
:class:`~kaip.local.gateway.mirror.Mirror` when the route mirrors.
Never decides which route or revision a request is for (:mod:`kaip.local.gateway.gateway` does)
and never answers for itself but with 502/504 when no replica answered.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence

from kaip.local.gateway.balance import pick_backend, pick_least_outstanding, pick_revision
from kaip.local.gateway.http1 import error_payload, request_head
from kaip.local.gateway.mirror import Mirror
from kaip.local.gateway.prefix import PrefixIndex, block_hashes, pick_by_prefix, prompt_of
from kaip.local.gateway.routes import Backend, CompiledRoute, RouteKind
from kaip.local.gateway.server import ClientConnection, Request
from kaip.local.gateway.signals import GatewaySignals, Observation
from kaip.local.gateway.stats import StatsRecorder
from kaip.local.gateway.trace import passed_on, resent, with_traceparent
from kaip.protocol.upstream import Headers, Outcome, UpstreamConnection, UpstreamPool

log = logging.getLogger("kaip.local.gateway")

EJECT_S = 1.0  # a replica that refused a connection is skipped this long (unless none is left)
EJECT_TIMEOUT_S = 30.0
"""A replica that let a request time out is skipped this long (unless none is left): long enough
that requests don't pile up behind a hang, short enough that one that recovers soon serves again.
A replica that hangs altogether also fails the supervisor's health checks and is restarted."""
INLINE_BODY_BYTES = 64 * 1024  # smaller bodies go out in one write with the head; larger: apart
MAX_TIMEOUT_RETRIES = 1  # tries of another replica after a response timeout, per request

Lookup = Callable[[RouteKind, str], CompiledRoute | None]


class Forwarder:
    """The gateway's proxied exchanges: which replica, how many tries, what the client gets."""

    def __init__(
        self,
        lookup: Lookup,
        pool: UpstreamPool,
        mirror: Mirror,
        rng: random.Random,
        signals: GatewaySignals | None = None,
    ) -> None:
        self._lookup = lookup
        self._signals = signals
        """Where retries, timeouts and each replica's busy time count (None: no signals)."""
        self._pool = pool
        self._mirror = mirror
        self._rng = rng
        self.outstanding: dict[str, int] = {}
        """Requests in flight per replica (least-outstanding balancing, draining)."""
        self.ejected: dict[str, float] = {}
        """Replica -> until when it is skipped (monotonic clock)."""
        self._prefixes = PrefixIndex()
        """Which replicas were sent which prompt prefixes (prefix-affinity routes)."""

    def forget(self, live: set[str]) -> None:
        """Drop what is kept about replicas no route has any more (and nothing is in flight to)."""
        for replica in [r for r, n in self.outstanding.items() if n == 0 and r not in live]:
            del self.outstanding[replica]
        for replica in [r for r in self.ejected if r not in live]:
            del self.ejected[replica]

    async def forward(
        self,
        conn: ClientConnection,
        request: Request,
        route: CompiledRoute,
        pinned: str | None,
        upstream_target: bytes,
        extra: Headers | None,
        stats: StatsRecorder,
        openai: bool,
        timeout_s: float,
        observed: Observation | None = None,
        head: bytes | None = None,
        continued: bool = False,
    ) -> str:
        """Send to a chosen replica; on a failure before any answer, try another (module doc).
        When tracing: ``observed`` when the request's trace is sampled (its spans), else
        ``head``, the unsampled ``traceparent`` its replicas get (``b""``: none, see
        ``SpanRecorder.open``'s ``mint``); ``continued``: the client's trace goes on. ``head``
        None: not tracing, the client's ``traceparent`` goes on as it came. Returns the
        revision that answered, or was tried last (``pinned`` or ``""`` when none was tried):
        where the gateway counts the request."""
        # When tracing, the head carries the first attempt's traceparent from the start: a
        # retry alone swaps in its own (below, at each attempt).
        # The client's tracestate goes on with its trace only (trace.py).
        first: bytes | None = None
        if observed is not None:
            first = observed.head_traceparent()
        elif head is not None:
            first = head
        if first is not None:
            traceparent = first
        else:
            traceparent = passed_on(request.headers)
            continued = bool(traceparent)
        body = request.body
        data = request_head(
            request.method,
            upstream_target,
            request.headers,
            len(body),
            traceparent,
            extra or (),
            conn.client_address,
            tracestate=continued,
        )
        if body and len(body) <= INLINE_BODY_BYTES:
            data += body
            body = b""
        is_head = request.method == b"HEAD"
        outstanding = self.outstanding
        revision = pinned or pick_revision(route, self._rng) or ""
        if pinned is None and (shadows := route.mirror_to(revision)):
            # A copy is no attempt of this request: it carries no span id of the gateway's.
            copy = data if not first else with_traceparent(data, first, passed_on(request.headers))
            self._mirror.submit(route, shadows, copy, body, timeout_s)
        hashes: list[int] = []
        if route.route.prefix_affinity and (prompt := prompt_of(upstream_target, request.body)):
            hashes = block_hashes(prompt)
        tried: set[str] = set()
        again_fresh: Backend | None = None
        timed_out: Backend | None = None
        timeouts = 0
        recorded = False  # the last attempt's error is already in the stats
        outcome = Outcome.FAILED_BEFORE_RESPONSE
        answered_by = revision
        last = pinned or ""  # the revision tried last, once an attempt ended
        signals = self._signals
        busy = None
        sent = 0  # attempts started
        started = time.perf_counter()
        while True:
            if tried:  # a retry: choose from the routes as they are now (a timeout is long)
                route = self._lookup(route.route.kind, route.name) or route
            backend = again_fresh or self.choose(route, revision, pinned is not None, tried, hashes)
            if backend is None:
                break
            if hashes:
                self._prefixes.record(hashes, backend.replica)
            fresh = again_fresh is not None
            again_fresh = None
            replica = backend.replica
            if sent:  # a retry (of backend's revision), with a traceparent of its own
                if signals is not None:
                    kind, owner = route.route.kind, route.route.owner
                    signals.record((kind, route.name, backend.revision, owner)).retries += 1
                if head:  # not sampled: a fresh parent id, as a sampled attempt gets
                    own = resent(head)
                    data, traceparent = with_traceparent(data, traceparent, own), own
            if observed is not None and (
                mine := observed.attempt(replica, backend.host, backend.port, sent)
            ):  # this attempt's own traceparent, swapped into the head (a retry's)
                data, traceparent = with_traceparent(data, traceparent, mine), mine
            sent += 1
            in_flight = outstanding.get(replica, 0)
            outstanding[replica] = in_flight + 1
            if signals is not None:  # the replica's busy time runs while it has any in flight
                busy = signals.busy(replica)
                if not in_flight:
                    busy.since = time.perf_counter()
            try:
                outcome, reused = await self._exchange(
                    conn, backend, data, body, is_head, fresh, timeout_s
                )
            finally:
                in_flight = outstanding[replica] - 1
                outstanding[replica] = in_flight
                if busy is not None and not in_flight:
                    busy.busy_s += time.perf_counter() - busy.since
            last = answered_by = backend.revision
            if observed is not None:
                observed.revision = answered_by
                observed.attempt_done(outcome, conn.status)
            recorded = False
            if outcome is Outcome.OK:
                if busy is not None:
                    busy.requests += 1  # an attempt it answered
                if self.ejected:
                    self.ejected.pop(replica, None)
                break
            if outcome is Outcome.TIMED_OUT:
                if signals is not None:
                    kind, owner = route.route.kind, route.route.owner
                    signals.record((kind, route.name, answered_by, owner)).timeouts += 1
                waited_ms = (time.perf_counter() - started) * 1000.0
                stats.record(backend.revision, waited_ms, True)
                recorded = True
                timed_out = backend
                timeouts += 1
                self.ejected[replica] = time.monotonic() + EJECT_TIMEOUT_S
                log.warning(
                    "%s %r: replica %s (revision %s) sent no response within %g s; skipping it "
                    "for %g s",
                    route.route.kind,
                    route.name,
                    replica,
                    backend.revision,
                    timeout_s,
                    EJECT_TIMEOUT_S,
                )
                if timeouts > MAX_TIMEOUT_RETRIES:
                    break
                tried.add(replica)
                continue
            if outcome is not Outcome.FAILED_BEFORE_RESPONSE or conn.head_sent:
                break
            if reused:  # a kept-alive connection the replica had closed: try it once afresh
                again_fresh = backend
                continue
            tried.add(replica)
            until = time.monotonic() + EJECT_S
            self.ejected[replica] = max(until, self.ejected.get(replica, until))
        latency_ms = (time.perf_counter() - started) * 1000.0
        if outcome is Outcome.OK:
            stats.record(answered_by, latency_ms, conn.status >= 500)
            return last
        if not recorded:
            stats.record(answered_by, latency_ms, True)
        if conn.head_sent:
            conn.flush()
            conn.abort()  # the response is cut short; closing says so to the client
        elif timed_out is not None:
            message = _timeout_message(route, timed_out, timeout_s, timeouts)
            payload = error_payload(message, openai=openai, error_type="server_error")
            conn.send_json(504, payload)
        else:
            kind, name = route.route.kind, route.name
            message = f"no replica of {kind} {name!r} could be reached"
            conn.send_json(502, error_payload(message, openai=openai))
        return last

    def choose(
        self,
        route: CompiledRoute,
        revision: str,
        pinned: bool,
        tried: set[str],
        hashes: Sequence[int] = (),
    ) -> Backend | None:
        """A replica of ``route`` for ``revision`` (only its own when ``pinned``), not one in
        ``tried``, and not an ejected one while another is left."""
        exclude: set[str] = tried
        if self.ejected:
            now = time.monotonic()
            for replica, until in list(self.ejected.items()):
                if until <= now:
                    del self.ejected[replica]
            if self.ejected:
                exclude = tried | self.ejected.keys()
        for skip in (exclude, tried) if exclude is not tried else (tried,):
            if hashes:  # prefix affinity: the revision's own replicas, else any (not pinned)
                own = route.by_revision.get(revision, ())
                prefixes, load, rng = self._prefixes, self.outstanding, self._rng
                backend = pick_by_prefix(own, hashes, prefixes, load, rng, skip)
                if backend is None and not pinned:
                    everyone = route.route.backends
                    backend = pick_by_prefix(everyone, hashes, prefixes, load, rng, skip)
            elif pinned:
                own = route.by_revision.get(revision, ())
                backend = pick_least_outstanding(own, self.outstanding, self._rng, skip)
            else:
                backend = pick_backend(route, revision, self.outstanding, self._rng, skip)
            if backend is not None:
                return backend
        return None

    async def _exchange(
        self,
        conn: ClientConnection,
        backend: Backend,
        data: bytes,
        body: bytes,
        is_head: bool,
        fresh: bool,
        timeout_s: float,
    ) -> tuple[Outcome, bool]:
        """One attempt on one replica; returns the outcome and whether the connection was reused."""
        key = (backend.host, backend.port)
        upstream: UpstreamConnection | None = None if fresh else self._pool.take_idle(key)
        reused = upstream is not None
        if upstream is None:
            try:
                upstream = await self._pool.connect(key)
            except (OSError, TimeoutError):
                return Outcome.FAILED_BEFORE_RESPONSE, False
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        conn.upstream = upstream
        if conn.write_paused:  # a slow reader: don't take more from this replica than it can
            upstream.pause_reading()
        upstream.send(data, body, conn, done, is_head, timeout_s)
        try:
            return await done, reused
        except asyncio.CancelledError:
            upstream.abort()  # the client went away: stop the replica's work too
            raise
        finally:
            conn.upstream = None


def _timeout_message(route: CompiledRoute, last: Backend, timeout_s: float, timeouts: int) -> str:
    kind, name = route.route.kind, route.name
    also = " (as did another replica before it)" if timeouts > 1 else ""
    return (
        f"{kind} {name!r} did not answer in time: replica {last.replica!r} of revision "
        f"{last.revision!r} sent no response within {timeout_s:g} s{also}; it is skipped for "
        f"{EJECT_TIMEOUT_S:g} s while another replica is left, retry shortly"
    )

"""The local gateway: one port in front of every replica and app that ``kaip up`` runs.

Owns the route table, the per-route load and per-revision stats, and the decision of what each
request becomes: an answer the gateway gives itself (health, model lists, errors) or a proxied
exchange with retries. The admin API is not
here: ``/_kaip/`` answers 404 naming the control port (Apps must not share its origin). Runs in
the caller's event loop (the controller's); never starts or stops replicas (it asks with
``on_demand``) and never reads the spec.

A proxied request goes to a replica through :mod:`kaip.local.gateway.forward` (the retry rule:
sent again, to another replica, only while not one byte of its answer has reached the client;
failing replicas ejected for a while; a prefix-affinity route's replica chosen by prompt
prefix); a request for a route with no ready replica waits in :mod:`kaip.local.gateway.hold`'s
queue.

A WebSocket upgrade under ``/apps/NAME/`` is checked (same origin) and chosen a replica here,
then relayed and spliced by :mod:`kaip.local.gateway.websocket`; anywhere else it gets 501.

Which revision a request goes to: one the request names (an OIP path with a version, a served
name only one live revision serves) is pinned to it; else a request carrying one of the route's
``canary_headers`` or ``canary_cookies`` (``rollout.traffic.canaryHeaders``, ``canaryCookies``)
goes to the canary while it has a ready replica, whatever its weight (a weight-0 step is a
preview only such requests reach); every other request draws a revision by weight. Retries
stay within a pinned revision. With ``mirror`` (``rollout.traffic.mirror``), a request drawn by
weight for another revision is also copied to the canary (:mod:`kaip.local.gateway.mirror`),
its answer discarded.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator, Sequence

from kaip.local.gateway import catalog, websocket
from kaip.local.gateway.balance import pick_revision
from kaip.local.gateway.forward import Forwarder
from kaip.local.gateway.history import TrafficHistory
from kaip.local.gateway.hold import HoldQueue
from kaip.local.gateway.http1 import error_payload, request_head
from kaip.local.gateway.limits import BodyLimit, Connections
from kaip.local.gateway.mirror import MAX_MIRRORED_IN_FLIGHT, Mirror
from kaip.local.gateway.paths import Target, TargetKind, parse_target
from kaip.local.gateway.routes import CompiledRoute, Route, RouteKind, RouteTable
from kaip.local.gateway.server import ClientConnection, Request
from kaip.local.gateway.signals import CONTENT_TYPE, GatewaySignals, LiveLoad, Observation
from kaip.local.gateway.stats import LoadSample, RevisionStats, StatsRecorder
from kaip.local.gateway.trace import passed_on
from kaip.protocol.extensions import unsupported_route
from kaip.protocol.model_paths import unknown_model_message
from kaip.protocol.upstream import Framing, Headers, UpstreamPool
from kaip.settings import HttpLimits
from kaip.spec import Serve
from kaip.telemetry.spans import SpanRecorder

RETRY_AFTER = [(b"retry-after", b"1")]
MODEL_REQUEST_BYTES = Serve().max_request_bytes  # for a Model route that does not say
ADMIN_REQUEST_BYTES = 1024 * 1024
OTHER_REQUEST_BYTES = 64 * 1024  # health, metadata, model lists, unknown paths


class Gateway:
    """Routes OIP v2, OpenAI and App requests to replicas; see DESIGN.md section 3."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        hold_timeout_s: float = 30.0,
        max_held: int = 1000,
        on_demand: Callable[[str], None] | None = None,
        control_url: str | None = None,
        response_timeout_s: float = 60.0,
        rng: random.Random | None = None,
        drain_s: float = 5.0,
        limits: HttpLimits | None = None,
        app_max_request_bytes: int = 16 * 2**20,
        observe: bool = True,
        tracer: SpanRecorder | None = None,
        mirror_max_in_flight: int = MAX_MIRRORED_IN_FLIGHT,
        websocket_idle_s: float = websocket.IDLE_S,
        models_start_no_traces: bool = False,
    ) -> None:
        self._host = host
        self._port = port
        self._response_timeout_s = response_timeout_s
        self.control_url = control_url
        """Where the admin API is (``kaip up``'s control port), named in 404s for ``/_kaip/``."""
        self._rng = rng or random.Random()
        self._mint = {"model": not models_start_no_traces, "app": True}
        """By route kind, whether a trace the gateway starts and does not sample reaches the
        replicas as a ``traceparent`` with flags 00 (so a parent-based replica records none of
        it). ``models_start_no_traces``: the Model replicas start no trace of their own (``kaip
        up`` runs them with ``KAIP_TRACE_ROOTS=off``), so they get no ``traceparent`` for such a
        request and have none to read; a caller's trace always goes on (trace.py)."""
        self._drain_s = drain_s
        self._websocket_idle_s = websocket_idle_s
        self._table = RouteTable()
        self._first_seen: dict[str, float] = {}
        self._stats: dict[str, StatsRecorder] = {}
        self._held = HoldQueue(
            self._lookup, hold_timeout_s=hold_timeout_s, max_held=max_held, on_demand=on_demand
        )
        self._pool = UpstreamPool()
        # Each client connection may hold one to a replica as well: two open files.
        self._connections: Connections[ClientConnection] = Connections(
            limits or HttpLimits(), files_per_connection=2
        )
        self._app_max_request_bytes = app_max_request_bytes
        self._body_limits: dict[tuple[TargetKind, str], BodyLimit] = {}
        self._openai_limit = BodyLimit(MODEL_REQUEST_BYTES, "serve.maxRequestBytes", openai=True)
        self._admin_limit = BodyLimit(ADMIN_REQUEST_BYTES, "the admin API")
        self._other_limit = BodyLimit(OTHER_REQUEST_BYTES, "this path")
        self._server: asyncio.Server | None = None
        self._stopping = False
        self.signals = GatewaySignals(tracer, live_load=self._live_load) if observe else None
        """``GET /metrics`` and spans (see signals); None when built with ``observe=False``."""
        self.history = TrafficHistory(self.signals) if self.signals is not None else None
        """The last hour of each resource's traffic, sampled while the gateway runs (charts)."""
        self._sampling: asyncio.Task[None] | None = None
        if self.signals is not None:
            self.signals.replica_phases = self._ready_backends
        self._mirror = Mirror(
            self._stats.get, self._rng, signals=self.signals, max_in_flight=mirror_max_in_flight
        )
        self._forwarder = Forwarder(self._lookup, self._pool, self._mirror, self._rng, self.signals)
        if self.signals is not None:
            self.signals.in_flight = self._forwarder.outstanding
        self._ejected = self._forwarder.ejected
        """Replica -> until when it is skipped (the forwarder's; tests clear it)."""

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> int:
        """Bind and serve; returns the bound port (``port=0`` picks a free one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientConnection(self._handle, self._connections, self._body_limit_for),
            self._host,
            self._port,
            reuse_address=True,
            backlog=2048,
        )
        port: int = self._server.sockets[0].getsockname()[1]
        self._port = port
        if self.history is not None:
            self._sampling = asyncio.create_task(self.history.run())
        return port

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish for up to ``drain_s``, close the rest."""
        self._stopping = True
        self._held.stopping = True
        if self._sampling is not None:
            self._sampling.cancel()
        if self._server is not None:
            self._server.close()
        self._held.wake_all()
        for conn in self._connections:
            conn.closing_after_response = True
            conn.close_if_idle()
        deadline = time.monotonic() + self._drain_s
        while self._connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in self._connections:
            conn.abort()
        await self._connections.close()
        await self._mirror.close()
        self._pool.close()
        if self._server is not None:
            await asyncio.sleep(0)
            self._server = None

    # -- the controller's side -------------------------------------------------------------------
    def set_routes(self, routes: Sequence[Route]) -> None:
        """Replace the whole route table; the next request sees the new one."""
        table = RouteTable.build(routes)
        self._table = table
        self._body_limits = {
            (TargetKind.MODEL if r.kind == "model" else TargetKind.APP, r.name): BodyLimit(
                r.max_request_bytes
                or (MODEL_REQUEST_BYTES if r.kind == "model" else self._app_max_request_bytes),
                f"model {r.name!r} (its serve.maxRequestBytes)"
                if r.kind == "model"
                else f"app {r.name!r} (KAIP_LOCAL__APP_MAX_REQUEST_BYTES)",
            )
            for r in routes
        }
        largest = table.largest_model_request or MODEL_REQUEST_BYTES
        self._openai_limit = BodyLimit(
            largest, "the Models served here (the largest serve.maxRequestBytes)", openai=True
        )
        for route in routes:
            if route.name not in self._stats:
                self._stats[route.name] = StatsRecorder(self._rng)
            self._first_seen.setdefault(route.name, time.time())
        self._forwarder.forget({b.replica for r in routes for b in r.backends})
        for key in self._held.keys:
            compiled = table.lookup(*key)
            if compiled is None or compiled.has_backends:
                self._held.wake(key)

    def take_stats(self, name: str) -> dict[str, RevisionStats]:
        """Per-revision stats since the last take of ``name`` (snapshot and reset)."""
        recorder = self._stats.get(name)
        return recorder.take() if recorder is not None else {}

    def load(self, name: str) -> LoadSample:
        recorder = self._stats.get(name)
        return recorder.load() if recorder is not None else LoadSample(0, 0, None)

    def outstanding(self, replica: str) -> int:
        """Requests in flight to one replica now: a drained replica may stop when this is 0."""
        return self._forwarder.outstanding.get(replica, 0)

    # -- per request ---------------------------------------------------------------------------
    def _body_limit_for(self, raw_target: bytes) -> BodyLimit:
        """How large a body to buffer for a request to ``raw_target``: its route's limit."""
        target = parse_target(raw_target)
        kind = target.kind
        if kind is TargetKind.MODEL:
            found = self._table.find_model(target.rest)  # by served name
            name = found[0].name if found is not None else ""
            return self._body_limits.get((kind, name), self._other_limit)
        if kind is TargetKind.APP:
            return self._body_limits.get((kind, target.name), self._other_limit)
        if kind is TargetKind.OPENAI:
            return self._openai_limit
        if kind is TargetKind.ADMIN:
            return self._admin_limit
        return self._other_limit

    async def _handle(self, conn: ClientConnection, request: Request) -> None:
        target = parse_target(request.target)
        kind = target.kind
        head = request.method == b"HEAD"
        if request.upgrade and websocket.wants_websocket(request.headers):
            if kind is TargetKind.APP:
                await self._websocket(conn, request, target)
            else:
                message = "WebSocket is served under /apps/NAME/ only (an App's own path)"
                conn.send_json(501, {"error": message}, head=head)
        elif kind is TargetKind.MODEL:
            await self._model_request(conn, request, target)
        elif kind is TargetKind.OPENAI:
            path = request.target.partition(b"?")[0].decode("latin-1")
            route, pinned, status, error = catalog.openai_route(self._table, path, request.body)
            if route is None:
                conn.send_json(status, error)
            else:
                await self._proxy(
                    conn, request, "model", route.name, pinned, target.upstream, openai=True
                )
        elif kind is TargetKind.ALL_STATS:
            answer = await catalog.all_statistics(self._pool, self._table, request.method)
            conn.send_json(answer.status, answer.payload, head=head)
        elif kind is TargetKind.APP:
            prefix = [(b"x-forwarded-prefix", b"/apps/" + target.name.encode())]
            await self._proxy(conn, request, "app", target.name, None, target.upstream, prefix)
        elif kind is TargetKind.HEALTH_LIVE:
            conn.send_json(200, {"live": True}, head=head)
        elif kind is TargetKind.HEALTH_READY:
            ready = not self._stopping
            conn.send_json(200 if ready else 503, {"ready": ready}, head=head)
        elif kind is TargetKind.SERVER_METADATA:
            conn.send_json(200, catalog.server_metadata(self._table), head=head)
        elif kind is TargetKind.MODEL_LIST:
            conn.send_json(200, {"models": sorted(self._table.served)}, head=head)
        elif kind is TargetKind.OPENAI_MODELS:
            cards = catalog.openai_cards(self._table, self._first_seen)
            conn.send_json(200, {"object": "list", "data": cards}, head=head)
        elif kind is TargetKind.OPENAI_MODEL:
            status, payload = catalog.openai_card(self._table, self._first_seen, target.name)
            conn.send_json(status, payload, head=head)
        elif kind is TargetKind.METRICS and self.signals is not None:
            self._send_metrics(conn, self.signals, head)
        elif kind is TargetKind.ADMIN:
            where = f"at {self.control_url}/_kaip/" if self.control_url else "elsewhere"
            message = (
                f"the admin API is not on the traffic port: it is {where}, on kaip up's control "
                "port, and needs the token in .kaip/admin.token (the kaip CLI finds both)"
            )
            conn.send_json(404, {"error": message}, head=head)
        else:
            path = request.target.partition(b"?")[0].decode("latin-1")
            unsupported = unsupported_route(path)
            if path == "/" and self.control_url:  # the portal lives on the control port
                portal = f"{self.control_url}/"
                found = {"portal": portal, "message": f"kaip's portal is at {portal}"}
                conn.send_json(307, found, [(b"location", portal.encode())], head=head)
                return
            if unsupported is not None:
                conn.send_json(501, {"error": unsupported}, head=head)
            else:
                conn.send_json(404, {"error": f"no route for {path}"}, head=head)

    async def _websocket(self, conn: ClientConnection, request: Request, target: Target) -> None:
        """An App's WebSocket: checked here, relayed and spliced by :mod:`websocket`."""
        name = target.name
        route = self._table.lookup("app", name)
        refused = websocket.cross_origin(request.headers)
        if refused is not None:
            conn.send_json(403, {"error": refused})
            return
        if route is None:
            self._not_found(conn, "app", name, False)
            return
        # Counted in (the route's stats) and, with signals, observed: from its arrival, with no
        # per-request object unless its trace is sampled (as _proxy).
        kind, owner = route.route.kind, route.route.owner
        stats = self._stats[name]
        stats.in_flight += 1
        stats.last_request_at = arrival = time.monotonic()
        signals = self.signals
        observed, head, continued = None, b"", False
        if signals is not None and signals.tracer is not None:
            method, path, headers = request.method, request.target, request.headers
            observed, head, continued = signals.trace(name, owner, method, path, headers)
        tried = ""  # the revision whose replica was tried
        started = time.perf_counter()
        try:
            if not route.has_backends:
                route = await self._held.hold("app", name, stats) or route
            revision = route.matched_revision(request.headers) or pick_revision(route, self._rng)
            backend = self._forwarder.choose(route, revision or "", False, set())
            if backend is None:
                message = f"app {name!r} has no ready replica yet; retry shortly"
                conn.send_json(503, {"error": message}, RETRY_AFTER)
                return
            tried = backend.revision
            prefix = [(b"x-forwarded-prefix", b"/apps/" + name.encode())]
            # As for HTTP (see forward): the client's tracestate goes on with its trace only.
            if observed is not None:
                observed.revision = tried
                traceparent = observed.relayed_traceparent()
            elif head:
                traceparent = head
            else:
                traceparent = passed_on(request.headers)
                continued = bool(traceparent)
            head = request_head(
                request.method, target.upstream, request.headers, 0, traceparent, prefix,
                conn.client_address, upgrade=b"websocket", tracestate=continued,
            )  # fmt: skip
            timeout_s = route.route.response_timeout_s or self._response_timeout_s
            limit = self._body_limits.get((TargetKind.APP, name), self._other_limit)
            conn.status = await websocket.tunnel(
                conn,
                backend.host,
                backend.port,
                head,
                handshake_timeout_s=timeout_s,
                max_frame_bytes=limit.max_bytes,
                idle_s=self._websocket_idle_s,
            )
            if not conn.head_sent:
                message = f"replica {backend.replica!r} of app {name!r} did not take the WebSocket"
                conn.send_json(conn.status, {"error": message})
            latency_ms = (time.perf_counter() - started) * 1000.0
            stats.record(backend.revision, latency_ms, conn.status >= 500)
        finally:
            stats.in_flight -= 1
            if signals is not None:
                seconds = time.monotonic() - arrival
                signals.count((kind, name, tried, owner), conn.status, seconds)
                if observed is not None:
                    observed.finish(conn.status)

    # -- answers about models the gateway gives itself (see catalog) -----------------------------
    async def _model_request(
        self, conn: ClientConnection, request: Request, target: Target
    ) -> None:
        """``/v2/models/{served name}/...``: answered here (see catalog) or proxied."""
        head = request.method == b"HEAD"
        outcome = await catalog.model_request(self._pool, self._table, target.rest, request.method)
        if isinstance(outcome, catalog.Answer):
            conn.send_json(outcome.status, outcome.payload, head=head)
            return
        route, pinned = outcome
        await self._proxy(conn, request, "model", route.name, pinned, target.upstream)

    async def _proxy(
        self,
        conn: ClientConnection,
        request: Request,
        kind: RouteKind,
        name: str,
        pinned: str | None,
        upstream_target: bytes,
        extra: Headers | None = None,
        *,
        openai: bool = False,
    ) -> None:
        route = self._table.lookup(kind, name)
        if route is None:
            self._not_found(conn, kind, name, openai)
            return
        # Counted in (the route's stats) and, with signals, observed: from its arrival (the
        # clock read for the stats), to the revision forward tried last, with no per-request
        # object unless its trace is sampled (an unsampled one: its traceparent, ``head``).
        owner = route.route.owner
        stats = self._stats[name]
        stats.in_flight += 1
        stats.last_request_at = arrival = time.monotonic()
        signals = self.signals
        observed: Observation | None = None
        head: bytes | None = None  # None: not tracing (the client's traceparent goes on as is)
        continued = False
        if signals is not None and (tracer := signals.tracer) is not None:
            # As signals.trace, inline (two calls fewer per request): an object only if sampled.
            trace, head, continued = tracer.open(request.headers, self._mint[kind])
            if trace is not None:
                method, target = request.method, request.target
                observed = Observation(signals, trace, name, owner, method, target, pinned or "")
                observed.continues_trace = continued
        revision = pinned or ""
        try:
            if not route.has_backends:
                held = await self._held.hold(kind, name, stats)
                if held is None:
                    if self._table.lookup(kind, name) is None:
                        self._not_found(conn, kind, name, openai)
                    else:
                        message = f"{kind} {name!r} has no ready replica yet; retry shortly"
                        conn.send_json(503, error_payload(message, openai=openai), RETRY_AFTER)
                    return
                route = held
            if pinned is None:
                pinned = route.matched_revision(request.headers)
            if pinned is not None and pinned not in route.by_revision:
                if pinned in route.route.weights:
                    message = f"revision {pinned!r} of {kind} {name!r} has no ready replica"
                    conn.send_json(503, error_payload(message, openai=openai), RETRY_AFTER)
                else:
                    message = f"{kind} {name!r} has no revision {pinned!r}"
                    conn.send_json(404, error_payload(message, openai=openai))
                return
            timeout_s = route.route.response_timeout_s or self._response_timeout_s
            revision = await self._forwarder.forward(
                conn, request, route, pinned, upstream_target, extra, stats, openai, timeout_s,
                observed, head, continued,
            )  # fmt: skip
        finally:
            stats.in_flight -= 1
            if signals is not None:
                seconds = time.monotonic() - arrival
                signals.count((kind, name, revision, owner), conn.status, seconds)
                if observed is not None:
                    observed.finish(conn.status)

    # -- signals (see signals) -------------------------------------------------------------------
    def _send_metrics(self, conn: ClientConnection, signals: GatewaySignals, head: bool) -> None:
        body = signals.scrape()
        headers = [(b"content-type", CONTENT_TYPE), (b"content-length", b"%d" % len(body))]
        conn.response_head(200, b"", headers, Framing.LENGTH)
        if not head:
            conn.response_body(body)
        conn.response_end()
        conn.flush()

    def _routes(self) -> list[Route]:
        table = self._table
        return [c.route for c in (*table.models.values(), *table.apps.values())]

    def _live_load(self) -> Iterator[LiveLoad]:
        for route in self._routes():
            stats = self._stats.get(route.name)
            if stats is not None:
                yield LiveLoad(route.kind, route.name, route.owner, stats.in_flight, stats.held)

    def _ready_backends(self) -> Iterator[tuple[str, str, str, str]]:
        """Replicas by phase as the gateway knows them (ready ones); ``kaip up`` sets better."""
        for route in self._routes():
            for backend in route.backends:
                yield route.name, backend.revision, route.owner, "ready"

    def _lookup(self, kind: RouteKind, name: str) -> CompiledRoute | None:
        return self._table.lookup(kind, name)

    def _not_found(self, conn: ClientConnection, kind: RouteKind, name: str, openai: bool) -> None:
        if openai:
            message = f"The model '{name}' does not exist"
            conn.send_json(404, error_payload(message, openai=True, code="model_not_found"))
        elif kind == "model":
            conn.send_json(404, error_payload(unknown_model_message(name)))
        else:
            conn.send_json(404, error_payload(f"{kind} {name!r} is not served here"))

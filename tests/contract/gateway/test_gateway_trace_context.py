"""W3C Trace Context through the gateway, from outside: a real gateway in front of a real
replica process that reports the ``traceparent`` and ``tracestate`` it got, with the gateway
tracing (a span recorder) and not. One rule for both (kaip.local.gateway.trace): the client's
trace goes on only when it sent exactly one valid ``traceparent``; otherwise the trace restarts
and the client's ``tracestate`` is dropped with it. The WebSocket side is in
test_gateway_websocket.py."""

from __future__ import annotations

from typing import Any

from gateway_harness import BackendProcess, app, backend, model, run, running

from kaip.telemetry.spans import SERVER, FinishedSpan, Sampling, SpanRecorder

A = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
B = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
TWO = [("traceparent", A), ("traceparent", B), ("tracestate", STATE)]
MALFORMED = [("traceparent", A.upper()), ("tracestate", STATE)]  # upper case is not W3C
VALID = [("traceparent", A), ("tracestate", STATE)]
ORPHAN = [("tracestate", STATE)]  # no traceparent at all


def _trace_id(traceparent: str) -> str:
    return traceparent.split("-")[1]


async def _seen(client: Any, headers: list[tuple[str, str]]) -> tuple[str, str]:
    """The ``traceparent`` and ``tracestate`` the replica got (``""``: none)."""
    answer = await client.get("/v2/models/m/ready", headers=headers)
    assert answer.status_code == 200
    got = answer.json()
    return got["traceparent"], got["headers"].get("tracestate", "")


def test_a_gateway_not_tracing_passes_on_one_valid_traceparent_with_its_tracestate_only(
    spawn_backend: Any,
) -> None:
    live: BackendProcess = spawn_backend("L")
    route = model("m", {"r": 100}, backend("L", "r", live.port))

    async def scenario() -> None:
        async with running([route]) as (_, client):
            assert await _seen(client, VALID) == (A, STATE)
            # Two traceparents: neither is followed (it used to pass the last one on).
            assert await _seen(client, TWO) == ("", "")
            # A malformed traceparent is dropped, and the tracestate of that trace with it.
            assert await _seen(client, MALFORMED) == ("", "")
            assert await _seen(client, ORPHAN) == ("", "")

    run(scenario())


def test_a_tracing_gateway_restarts_the_trace_on_two_traceparents_and_drops_tracestate(
    spawn_backend: Any,
) -> None:
    live: BackendProcess = spawn_backend("L")
    route = model("m", {"r": 100}, backend("L", "r", live.port))
    spans: list[FinishedSpan] = []
    tracer = SpanRecorder(spans.append, Sampling(ratio=1.0))  # every trace recorded

    async def scenario() -> list[tuple[str, str]]:
        async with running([route], tracer=tracer) as (_, client):
            return [await _seen(client, h) for h in (VALID, TWO, MALFORMED, ORPHAN)]

    valid, two, malformed, orphan = run(scenario())
    servers = {span.trace_id: span for span in spans if span.kind == SERVER}
    assert len(servers) == 4  # one trace per request, each its own
    # The valid one goes on: the replica is in the client's trace and gets its tracestate.
    assert _trace_id(valid[0]) == _trace_id(A) and valid[1] == STATE
    followed = servers[int(_trace_id(A), 16)]
    assert followed.remote_parent and followed.parent_id == int(A.split("-")[2], 16)
    # Two traceparents: a new trace (the span recorder used to follow the first one, while
    # the pass-through of a gateway not tracing passed the last one on).
    assert _trace_id(two[0]) not in (_trace_id(A), _trace_id(B))
    assert _trace_id(malformed[0]) != _trace_id(A)
    for restarted in (two, malformed, orphan):
        server = servers[int(_trace_id(restarted[0]), 16)]
        assert server.parent_id == 0 and not server.remote_parent  # a root span here
        assert restarted[1] == "", "a restarted trace must not carry the client's tracestate"


HIGHER = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-holds"


def test_a_higher_version_traceparent_goes_on_by_its_first_four_fields(
    spawn_backend: Any,
) -> None:
    """W3C Trace Context: a ``traceparent`` of a version above 00 is read by its trace id,
    parent id and flags. It used to be taken as malformed: the gateway restarted the trace and
    dropped the client's tracestate. Not tracing, the gateway passes it on as it came; tracing,
    the replica gets version 00 in the client's trace, under the gateway's span, sampled or not
    as the client said, with the tracestate."""
    live: BackendProcess = spawn_backend("L")
    route = model("m", {"r": 100}, backend("L", "r", live.port))
    unsampled = HIGHER.replace("-01-what", "-00-what")
    spans: list[FinishedSpan] = []
    tracer = SpanRecorder(spans.append, Sampling(ratio=0.0))  # parent based: the flag decides

    async def scenario() -> list[tuple[str, str]]:
        seen = []
        async with running([route]) as (_, client):
            seen.append(await _seen(client, [("traceparent", HIGHER), ("tracestate", STATE)]))
        async with running([route], tracer=tracer) as (_, client):
            for value in (HIGHER, unsampled):
                seen.append(await _seen(client, [("traceparent", value), ("tracestate", STATE)]))
        return seen

    passed, sampled, not_sampled = run(scenario())
    assert passed == (HIGHER, STATE)
    (server,) = (span for span in spans if span.kind == SERVER)
    assert server.trace_id == int(_trace_id(HIGHER), 16)
    assert server.parent_id == 0xB7AD6B7169203331 and server.remote_parent
    for (value, state), flags in ((sampled, "01"), (not_sampled, "00")):
        version, trace_id, span_id, last = value.split("-")
        assert (version, trace_id, last, state) == ("00", _trace_id(HIGHER), flags, STATE)
        assert span_id not in ("b7ad6b7169203331", "0" * 16)


def test_an_unsampled_trace_goes_on_with_its_tracestate_and_a_restarted_one_without(
    spawn_backend: Any,
) -> None:
    """Under a tracing gateway that samples none of the traces it starts (ratio 0), a client's
    valid unsampled ``traceparent`` goes on (same trace, the gateway's parent id, flags 00) with
    its tracestate; two traceparents, a malformed one or none restart the trace without it."""
    live: BackendProcess = spawn_backend("L")
    route = model("m", {"r": 100}, backend("L", "r", live.port))
    unsampled = [("traceparent", A[:-2] + "00"), ("tracestate", STATE)]
    spans: list[FinishedSpan] = []
    tracer = SpanRecorder(spans.append, Sampling(ratio=0.0))

    async def scenario() -> list[tuple[str, str]]:
        async with running([route], tracer=tracer) as (_, client):
            return [await _seen(client, h) for h in (unsampled, TWO, MALFORMED, ORPHAN)]

    (followed, state), *restarted = run(scenario())
    assert spans == []
    _, trace_id, span_id, flags = followed.split("-")
    assert (trace_id, flags, state) == (_trace_id(A), "00", STATE)
    assert span_id != A.split("-")[2]
    for value, state in restarted:
        version, trace_id, span_id, flags = value.split("-")
        assert (version, flags, state) == ("00", "00", "")
        assert (
            trace_id not in (_trace_id(A), _trace_id(B)) and int(trace_id, 16) and int(span_id, 16)
        )


def test_replicas_that_start_no_trace_get_a_traceparent_only_for_a_trace_that_goes_on(
    spawn_backend: Any,
) -> None:
    """``models_start_no_traces`` (kaip up, whose Model replicas run with
    ``KAIP_TRACE_ROOTS=off``): a trace the gateway starts and does not sample reaches a Model's
    replica with no ``traceparent`` at all; a client's trace still goes on, sampled or not, with
    its tracestate; a sampled one carries the gateway's span; an App's replica (whose tracing
    kaip does not configure) still gets a flags-00 one."""
    live: BackendProcess = spawn_backend("L")
    routes = [
        model("m", {"r": 100}, backend("L", "r", live.port)),
        app("web", backend("L", "w", live.port)),
    ]
    unsampled = [("traceparent", A[:-2] + "00"), ("tracestate", STATE)]
    spans: list[FinishedSpan] = []
    tracer = SpanRecorder(spans.append, Sampling(ratio=0.0))  # samples none it starts

    async def scenario() -> tuple[list[tuple[str, str]], str]:
        async with running(routes, tracer=tracer, models_start_no_traces=True) as (_, client):
            seen = [await _seen(client, h) for h in ([], ORPHAN, TWO, MALFORMED, unsampled, VALID)]
            answer = await client.get("/apps/web/anything")
            assert answer.status_code == 200
            return seen, answer.json()["traceparent"]

    (*restarted, (followed, state), (sampled, sampled_state)), app_seen = run(scenario())
    assert restarted == [("", "")] * 4
    _, trace_id, span_id, flags = followed.split("-")
    assert (trace_id, flags, state) == (_trace_id(A), "00", STATE)
    assert span_id != A.split("-")[2]
    _, trace_id, span_id, flags = sampled.split("-")
    assert (trace_id, flags, sampled_state) == (_trace_id(A), "01", STATE)
    [server] = [s for s in spans if s.kind == SERVER]
    assert server.trace_id == int(_trace_id(A), 16)
    version, trace_id, _, flags = app_seen.split("-")
    assert (version, flags) == ("00", "00") and trace_id != _trace_id(A)

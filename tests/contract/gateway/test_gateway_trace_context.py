"""W3C Trace Context through the gateway, from outside: a real gateway in front of a real
replica process that reports the ``traceparent`` and ``tracestate`` it got, with the gateway
tracing (a span recorder) and not. One rule for both (kaip.local.gateway.trace): the client's
trace goes on only when it sent exactly one valid ``traceparent``; otherwise the trace restarts
and the client's ``tracestate`` is dropped with it. The WebSocket side is in
test_gateway_websocket.py."""

from __future__ import annotations

from typing import Any

from gateway_harness import BackendProcess, backend, model, run, running

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

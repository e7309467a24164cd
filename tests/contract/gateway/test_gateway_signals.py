"""The gateway's signals from outside: real scrapes of ``GET /metrics`` parsed by
prometheus_client, and its spans exported by the OpenTelemetry SDK over OTLP/HTTP to a real
receiver on loopback, a retried request included, and what an unsampled trace passes on."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from gateway_harness import AB, BackendProcess, backend, model, run, running, until
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/contract: the shared OTLP receiver
from otlp_receiver import serve_otlp

from kaip.local.gateway import Route
from kaip.telemetry.otel import recorder
from kaip.telemetry.spans import FinishedSpan, Sampling, SpanRecorder, parse_traceparent


def owned(route: Route, owner: str) -> Route:
    return Route(route.kind, route.name, route.weights, route.backends, owner=owner)


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of one real scrape, keyed by name and labels."""
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def dead_then_live(spawn_backend: Any) -> Route:
    """Model ``m`` (revision ``r``) on a dead replica D, whose port refuses connections (an
    attempt there fails and is retried), and a live one L."""
    live: BackendProcess = spawn_backend("L")
    dead: BackendProcess = spawn_backend("D")
    dead.kill()
    return model("m", {"r": 100}, backend("D", "r", dead.port), backend("L", "r", live.port))


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def test_metrics_count_requests_by_class_latency_and_replicas(backends_ab: AB) -> None:
    a, b = backends_ab
    route = owned(
        model("digits", {"3": 100}, backend("a", "3", a.port), backend("b", "3", b.port)), "team-a"
    )

    async def scenario() -> None:
        async with running([route]) as (_, client):
            for _ in range(3):
                assert (await client.get("/v2/models/digits/ready")).status_code == 200
            assert (await client.get("/v2/models/digits/status/503")).status_code == 503
            assert (await client.get("/v2/models/digits/status/404")).status_code == 404
            seen = await scrape(client)
            key = {"kind": "model", "resource": "digits", "revision": "3", "owner": "team-a"}
            by_class = {
                cls: seen.get(("kaip_gateway_requests_total", labels(**key, status_class=cls)))
                for cls in ("2xx", "4xx", "5xx")
            }
            assert by_class == {"2xx": 3.0, "4xx": 1.0, "5xx": 1.0}
            assert seen[("kaip_gateway_request_duration_seconds_count", labels(**key))] == 5.0
            assert (
                seen[("kaip_gateway_request_duration_seconds_bucket", labels(**key, le="+Inf"))]
                == 5.0
            )
            assert seen[("kaip_gateway_request_duration_seconds_sum", labels(**key))] > 0
            assert seen[("kaip_gateway_retries_total", labels(**key))] == 0.0
            assert seen[("kaip_gateway_timeouts_total", labels(**key))] == 0.0
            route_key = labels(kind="model", resource="digits", owner="team-a")
            assert seen[("kaip_gateway_inflight_requests", route_key)] == 0.0
            assert seen[("kaip_gateway_held_requests", route_key)] == 0.0
            ready = labels(resource="digits", revision="3", owner="team-a", phase="ready")
            assert seen[("kaip_replicas", ready)] == 2.0
            head = await client.head("/metrics")
            assert head.status_code == 200 and head.content == b""

    run(scenario())


def test_a_replica_counts_the_attempts_it_answered_not_one_its_client_left(
    backends_ab: AB,
) -> None:
    """Per replica, the busy time and answered requests the cost attribution reads: a request
    whose client goes away while its replica works counts no answer, and the replica's busy
    time stops once nothing is in flight to it (the attempt ends with the request)."""
    a, _ = backends_ab
    route = model("digits", {"1": 100}, backend("a", "1", a.port))

    async def scenario() -> None:
        async with running([route]) as (gateway, client):
            assert gateway.signals is not None
            for _ in range(3):
                assert (await client.get("/v2/models/digits/ready")).status_code == 200
            assert gateway.signals.replica_busy()["a"].requests == 3
            port = client.base_url.port
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /v2/models/digits/hold?gone HTTP/1.1\r\nhost: x\r\n\r\n")
            await until(lambda: gateway.outstanding("a") == 1, "the held request is in flight")
            writer.close()  # the client goes away while the replica works on its request
            await until(lambda: gateway.load("digits").in_flight == 0, "the request ended")
            async with httpx.AsyncClient(timeout=10) as direct:
                await direct.get(f"http://127.0.0.1:{a.port}/release?gone")
            busy = gateway.signals.replica_busy()["a"]
            assert busy.requests == 3 and busy.busy_seconds > 0
            await asyncio.sleep(0.05)  # nothing in flight: its busy time no longer grows
            assert gateway.signals.replica_busy()["a"].busy_seconds == busy.busy_seconds
            assert (await client.get("/v2/models/digits/ready")).status_code == 200
            assert gateway.signals.replica_busy()["a"].requests == 4

    run(scenario())


def test_held_and_in_flight_requests_show_while_they_wait(backends_ab: AB) -> None:
    a, _ = backends_ab
    empty = owned(model("later", {"1": 100}), "team-b")

    async def scenario() -> None:
        async with running([empty]) as (gateway, client):
            waiting = asyncio.create_task(client.get("/v2/models/later/ready"))
            key = labels(kind="model", resource="later", owner="team-b")
            seen: dict[Any, float] = {}

            async def held() -> bool:
                seen.update(await scrape(client))
                return seen.get(("kaip_gateway_held_requests", key)) == 1.0

            for _ in range(500):
                if await held():
                    break
                await asyncio.sleep(0.02)
            assert seen[("kaip_gateway_held_requests", key)] == 1.0
            assert seen[("kaip_gateway_inflight_requests", key)] == 1.0
            held_since = time.monotonic()  # the request arrived before this
            await asyncio.sleep(0.5)
            held_s = time.monotonic() - held_since
            gateway.set_routes(
                [owned(model("later", {"1": 100}, backend("a", "1", a.port)), "team-b")]
            )
            assert (await waiting).status_code == 200
            after = await scrape(client)
            assert after[("kaip_gateway_held_requests", key)] == 0.0
            assert after[("kaip_gateway_inflight_requests", key)] == 0.0
            ok = labels(
                kind="model", resource="later", revision="1", owner="team-b", status_class="2xx"
            )
            assert after[("kaip_gateway_requests_total", ok)] == 1.0
            # Its latency runs from its arrival, the time it was held included.
            revision = labels(kind="model", resource="later", revision="1", owner="team-b")
            assert after[("kaip_gateway_request_duration_seconds_sum", revision)] >= held_s

    run(scenario())


def test_a_retried_request_is_one_trace_with_both_attempts_exported_by_otlp(
    spawn_backend: Any,
) -> None:
    route = owned(dead_then_live(spawn_backend), "team-c")
    client_trace = "4bf92f3577b34da6a3ce929d0e0e4736"

    with serve_otlp() as receiver:
        tracer, provider = recorder(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces"))

        async def scenario() -> list[dict[str, Any]]:
            options = {"rng": random.Random(3), "tracer": tracer}
            async with running([route], **options) as (_, client):
                answers = []
                for i in range(40):  # until an attempt lands on D (the seeded rng decides when)
                    parent = f"00-{client_trace}-{i + 1:016x}-01"
                    answer = await client.get("/v2/models/m/ready", headers={"traceparent": parent})
                    assert answer.status_code == 200 and answer.json()["replica"] == "L"
                    answers.append(answer.json())
                    seen = await scrape(client)
                    key = labels(kind="model", resource="m", revision="r", owner="team-c")
                    if seen[("kaip_gateway_retries_total", key)] == 1.0:
                        break
                else:
                    raise AssertionError("no request was ever sent to the dead replica first")
                for i in range(len(answers), len(answers) + 2):  # D is ejected: one attempt each
                    parent = f"00-{client_trace}-{i + 1:016x}-01"
                    answer = await client.get("/v2/models/m/ready", headers={"traceparent": parent})
                    answers.append(answer.json())
                seen = await scrape(client)
                assert seen[("kaip_gateway_retries_total", key)] == 1.0
                # The retried request counts once, as every other, under the revision.
                ok = labels(kind="model", resource="m", revision="r", owner="team-c",
                            status_class="2xx")  # fmt: skip
                assert seen[("kaip_gateway_requests_total", ok)] == len(answers)
                count = seen[("kaip_gateway_request_duration_seconds_count", key)]
                assert count == len(answers)
                return answers

        answers = run(scenario())
        provider.force_flush()
        retried = answers[-3]
        spans = receiver.wait_for(client_trace, 2 * len(answers) + 1)  # a retry adds one
        provider.shutdown()

    by_id = {s.span_id.hex(): s for s in spans}
    servers = [s for s in spans if s.kind == s.SPAN_KIND_SERVER]
    clients = [s for s in spans if s.kind == s.SPAN_KIND_CLIENT]
    assert len(servers) == len(answers)  # one server span per request, in the client's trace
    last_server = sorted(servers, key=lambda s: s.start_time_unix_nano)[-3]  # the retried one
    assert last_server.parent_span_id.hex() == f"{len(answers) - 2:016x}"  # the client's span
    attempts = sorted(
        (s for s in clients if s.parent_span_id == last_server.span_id),
        key=lambda s: s.start_time_unix_nano,
    )
    assert len(attempts) == 2  # the refused attempt and the retry
    first, second = (_attributes(s) for s in attempts)
    assert first["kaip.replica"] == "D" and first["error.type"] == "connection_failed"
    assert second["kaip.replica"] == "L" and second["http.request.resend_count"] == 1
    assert second["http.response.status_code"] == 200
    # The replica saw the second attempt's span as its parent, in the client's trace.
    assert retried["traceparent"] == f"00-{client_trace}-{attempts[1].span_id.hex()}-01"
    # A request answered at once saw its one attempt's span (written into the head once).
    for i, answer in enumerate(answers[-2:], start=len(answers) - 1):
        (server_span,) = (s for s in servers if s.parent_span_id.hex() == f"{i:016x}")
        (attempt,) = (s for s in clients if s.parent_span_id == server_span.span_id)
        assert answer["replica"] == "L"
        assert answer["traceparent"] == f"00-{client_trace}-{attempt.span_id.hex()}-01"
    server = _attributes(last_server)
    assert server["http.request.method"] == "GET" and server["url.path"] == "/v2/models/m/ready"
    assert server["http.response.status_code"] == 200
    assert server["kaip.resource"] == "m" and server["kaip.owner"] == "team-c"
    assert server["kaip.revision"] == "r"
    assert all(by_id[c.parent_span_id.hex()].kind == c.SPAN_KIND_SERVER for c in clients)


def _attributes(span: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attribute in span.attributes:
        value = attribute.value
        values[attribute.key] = getattr(value, value.WhichOneof("value"))
    return values


def test_unsampled_traces_record_nothing_and_tell_the_replica(spawn_backend: Any) -> None:
    """A caller's unsampled ``traceparent`` is followed (parent based); a trace the gateway
    starts is sampled at the ratio (0 here): no span is exported, and the replica gets the same
    trace id with the sampled flag off, under a span id of the gateway's."""
    live: BackendProcess = spawn_backend("L")
    route = owned(model("m", {"r": 100}, backend("L", "r", live.port)), "team-c")
    caller_trace, sampled_trace = (
        "0af7651916cd43dd8448eb211c80319c",
        "4bf92f3577b34da6a3ce929d0e0e4736",
    )

    with serve_otlp() as receiver:
        tracer, provider = recorder(
            OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces"), Sampling(ratio=0.0)
        )

        async def scenario() -> list[dict[str, Any]]:
            async with running([route], tracer=tracer) as (_, client):
                answers = []
                for parent in (f"00-{caller_trace}-00f067aa0ba902b7-00", None):
                    headers = {"traceparent": parent} if parent else {}
                    answer = await client.get("/v2/models/m/ready", headers=headers)
                    answers.append(answer.json())
                # A sampled caller is still traced at ratio 0: the export is known to work.
                parent = f"00-{sampled_trace}-00f067aa0ba902b7-01"
                answer = await client.get("/v2/models/m/ready", headers={"traceparent": parent})
                answers.append(answer.json())
                return answers

        followed, started, sampled = run(scenario())
        provider.force_flush()
        spans = receiver.wait_for(sampled_trace, 2)
        provider.shutdown()

    assert {s.trace_id.hex() for s in receiver.spans} == {sampled_trace}
    assert len(spans) == 2  # the server span and its one attempt
    _, trace_id, span_id, flags = followed["traceparent"].split("-")
    assert (trace_id, flags) == (caller_trace, "00") and span_id != "00f067aa0ba902b7"
    _, trace_id, span_id, flags = started["traceparent"].split("-")
    assert flags == "00" and trace_id != caller_trace and int(trace_id, 16)
    assert sampled["traceparent"].endswith("-01")


def test_a_retry_of_an_unsampled_request_carries_its_own_well_formed_traceparent(
    spawn_backend: Any,
) -> None:
    """An unsampled request's ``traceparent`` is cut from a pool at the gateway; a retry swaps
    in one of its own: the same trace, flags 00, a new parent id, still a valid value."""
    route = dead_then_live(spawn_backend)
    client_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    spans: list[FinishedSpan] = []
    tracer = SpanRecorder(spans.append, Sampling(ratio=0.0))

    async def scenario() -> list[str]:
        seen = []
        async with running([route], rng=random.Random(3), tracer=tracer) as (_, client):
            key = labels(kind="model", resource="m", revision="r", owner="")
            for i in range(40):  # until an attempt lands on D (the seeded rng decides when)
                for parent in (f"00-{client_trace}-{i + 1:016x}-00", None):
                    headers = {"traceparent": parent} if parent else {}
                    answer = await client.get("/v2/models/m/ready", headers=headers)
                    assert answer.status_code == 200
                    seen.append(answer.json()["traceparent"])
                    if (await scrape(client)).get(("kaip_gateway_retries_total", key)) == 1.0:
                        return seen
        raise AssertionError("no request was ever sent to the dead replica first")

    seen = run(scenario())
    assert spans == []
    for value in seen:  # the retried one last, the others answered at once
        parent = parse_traceparent(value.encode())
        assert parent is not None and not parent.sampled and value.startswith("00-"), value
    followed = [v for v in seen if v.split("-")[1] == client_trace]
    assert len(followed) == (len(seen) + 1) // 2  # every other request sent the client's trace
    assert len({v.split("-")[2] for v in seen}) == len(seen)  # a parent id each


def test_a_retry_of_an_unsampled_request_to_replicas_that_start_no_trace_carries_none(
    spawn_backend: Any,
) -> None:
    """With ``models_start_no_traces`` (kaip up), a trace the gateway starts and does not sample
    reaches no replica as a ``traceparent``, on a retry either; a client's unsampled trace goes
    on to every attempt, each under a parent id of its own."""
    route = dead_then_live(spawn_backend)
    client_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    spans: list[FinishedSpan] = []
    tracer = SpanRecorder(spans.append, Sampling(ratio=0.0))
    options = {"rng": random.Random(3), "tracer": tracer, "models_start_no_traces": True}

    async def scenario() -> tuple[list[str], list[str], set[bool]]:
        mine: list[str] = []  # what the replica got for requests without a traceparent
        theirs: list[str] = []  # and for those in a client's unsampled trace
        retried: set[bool] = set()  # the kinds of request retried (True: the client's trace)
        retries = 0.0
        async with running([route], **options) as (gateway, client):
            key = labels(kind="model", resource="m", revision="r", owner="")
            for i in range(80):  # until one of each was retried (the seeded rng decides when)
                parent = f"00-{client_trace}-{i + 1:016x}-00" if i % 2 else None
                headers = {"traceparent": parent} if parent else {}
                answer = await client.get("/v2/models/m/ready", headers=headers)
                assert answer.status_code == 200
                (theirs if parent else mine).append(answer.json()["traceparent"])
                now = (await scrape(client)).get(("kaip_gateway_retries_total", key), 0.0)
                if now > retries:
                    retries = now
                    retried.add(parent is not None)
                    if len(retried) == 2:
                        return mine, theirs, retried
                gateway._ejected.clear()  # D again at once, not after its ejection ends
        raise AssertionError(f"retried only these kinds (True: a client's trace): {retried}")

    mine, theirs, _ = run(scenario())
    assert spans == [] and mine == [""] * len(mine)
    for value in theirs:
        parent = parse_traceparent(value.encode())
        assert parent is not None and not parent.sampled and value.split("-")[1] == client_trace
    assert len({v.split("-")[2] for v in theirs}) == len(theirs)  # a parent id each

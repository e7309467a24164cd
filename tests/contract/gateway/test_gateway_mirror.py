"""Traffic mirroring (issue 13 #5) against real replicas: the canary gets a copy of every request
stable serves, clients only ever get stable's answers, a broken or silent canary changes nothing
a client sees, and copies past the bound are dropped and counted. Timing is never asserted: a
client's httpx timeout (20 s) is far below the replica's response timeout (60 s), so a client
made to wait for a silent canary would fail rather than pass slowly."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from gateway_harness import BackendProcess, backend, hanging_replica, run, running, until
from test_gateway_signals import labels, scrape

from kaip.local.gateway import Backend, Route
from kaip.local.gateway.stats import RevisionStats
from kaip.telemetry.spans import CLIENT, FinishedSpan, SpanRecorder


def shadowed(stable: Backend, canary: Backend, *, mirror: bool = True) -> Route:
    """Model ``alpha``: stable ``s1`` takes all traffic, canary ``c1`` is at a weight-0 step."""
    return Route(
        "model",
        "alpha",
        {"s1": 100, "c1": 0},
        (stable, canary),
        canary="c1",
        mirror=mirror,
        canary_headers={b"x-canary": b"yes"},
        response_timeout_s=60,
    )


def seen(replica: BackendProcess) -> list[tuple[str, int]]:
    answer = httpx.get(f"http://127.0.0.1:{replica.port}/_seen", timeout=10, trust_env=False)
    return [(path, size) for path, size in answer.json()["seen"]]


def test_every_request_stable_serves_is_copied_to_the_canary_and_counted(
    spawn_backend: Callable[[str], BackendProcess],
) -> None:
    a, b = spawn_backend("A"), spawn_backend("B")
    route = shadowed(backend("A", "s1", a.port), backend("B", "c1", b.port))
    sent = [(f"/v2/models/alpha/infer/{i}", i * 100) for i in range(12)]
    taken: dict[str, RevisionStats] = {}

    async def scenario() -> None:
        async with running([route]) as (gateway, client):
            for path, size in sent:
                answer = await client.post(path, content=b"x" * size)
                assert (answer.status_code, answer.json()["replica"]) == (200, "A")
                assert answer.json()["body_len"] == size
            marked = await client.post("/v2/models/alpha/infer/marked", headers={"X-Canary": "yes"})
            assert marked.json()["replica"] == "B"  # routed, not mirrored: B answers it
            await until(lambda: len(seen(b)) == len(sent) + 1, "a copy of every request at B")

            def mirrored() -> bool:
                for revision, stats in gateway.take_stats("alpha").items():
                    old = taken.get(revision, RevisionStats(0, 0, ()))
                    latencies = old.latencies_ms + stats.latencies_ms
                    taken[revision] = RevisionStats(
                        old.requests + stats.requests, old.errors + stats.errors, latencies
                    )
                return taken.get("c1", RevisionStats(0, 0, ())).requests == len(sent) + 1

            await until(mirrored, "the canary's copies in its stats")
            metrics = await scrape(client)
            key = {"kind": "model", "resource": "alpha", "revision": "c1", "owner": ""}
            copies = ("kaip_gateway_mirrored_requests_total", labels(**key, status_class="2xx"))
            assert metrics[copies] == len(sent)

    run(scenario())
    assert sorted(seen(b)) == sorted([*sent, ("/v2/models/alpha/infer/marked", 0)])
    assert sorted(seen(a)) == sorted(sent)  # A never saw the marked request
    assert taken["s1"].requests == len(sent) and taken["c1"].errors == 0


def test_a_traced_request_s_copy_carries_the_client_s_traceparent_not_the_attempt_s(
    spawn_backend: Callable[[str], BackendProcess],
) -> None:
    """The copy is no attempt of the request: when the gateway traces, stable gets the span of
    its attempt as parent while the canary gets what the client sent, as it would untraced."""
    a, b = spawn_backend("A"), spawn_backend("B")
    route = shadowed(backend("A", "s1", a.port), backend("B", "c1", b.port))
    spans: list[FinishedSpan] = []
    given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    async def scenario() -> str:
        async with running([route], tracer=SpanRecorder(spans.append)) as (_, client):
            answer = await client.post("/v2/models/alpha/infer", headers={"traceparent": given})
            assert answer.json()["replica"] == "A"
            await until(lambda: len(seen(b)) == 1, "the copy at B")
            traceparent: str = answer.json()["traceparent"]
            return traceparent

    at_stable = run(scenario())
    (attempt,) = (s for s in spans if s.kind == CLIENT)
    assert at_stable == f"00-{attempt.trace_id:032x}-{attempt.span_id:016x}-01"
    assert at_stable.split("-")[1] == given.split("-")[1]
    copies = httpx.get(f"http://127.0.0.1:{b.port}/_seen", timeout=10, trust_env=False).json()
    assert copies["traceparents"] == [given]


def test_without_mirror_the_canary_at_weight_zero_gets_nothing(
    spawn_backend: Callable[[str], BackendProcess],
) -> None:
    a, b = spawn_backend("A"), spawn_backend("B")
    route = shadowed(backend("A", "s1", a.port), backend("B", "c1", b.port), mirror=False)

    async def scenario() -> None:
        async with running([route]) as (_, client):
            for _ in range(5):
                assert (await client.post("/v2/models/alpha/infer")).json()["replica"] == "A"
            # only the marked request reaches B: nothing is copied
            await client.post("/v2/models/alpha/infer/marked", headers={"X-Canary": "yes"})
            assert seen(b) == [("/v2/models/alpha/infer/marked", 0)]

    run(scenario())


def test_a_broken_canary_changes_no_answer_and_its_errors_are_its_evidence(
    spawn_backend: Callable[[str], BackendProcess],
) -> None:
    a, broken = spawn_backend("A"), spawn_backend("broken-B")
    route = shadowed(backend("A", "s1", a.port), backend("broken-B", "c1", broken.port))
    errors = [0]

    async def scenario() -> None:
        async with running([route]) as (gateway, client):
            for _ in range(10):
                answer = await client.post("/v2/models/alpha/infer", json={"inputs": []})
                assert (answer.status_code, answer.json()["replica"]) == (200, "A")

            def counted() -> bool:
                errors[0] += gateway.take_stats("alpha").get("c1", RevisionStats(0, 0, ())).errors
                return errors[0] == 10

            await until(counted, "the canary's 500s counted as its errors")
            metrics = await scrape(client)
            key = {"kind": "model", "resource": "alpha", "revision": "c1", "owner": ""}
            copies = ("kaip_gateway_mirrored_requests_total", labels(**key, status_class="5xx"))
            assert metrics[copies] == 10

    run(scenario())


def test_a_silent_canary_delays_no_client_and_copies_past_the_bound_are_dropped(
    spawn_backend: Callable[[str], BackendProcess],
) -> None:
    a = spawn_backend("A")

    async def scenario() -> None:
        async with hanging_replica() as silent:
            route = shadowed(backend("A", "s1", a.port), backend("silent", "c1", silent.port))
            async with running([route], mirror_max_in_flight=2) as (_, client):
                for _ in range(5):  # each would wait 60 s for the silent canary
                    answer = await client.post("/v2/models/alpha/infer", json={"inputs": []})
                    assert (answer.status_code, answer.json()["replica"]) == (200, "A")
                await until(lambda: silent.requests == 2, "two copies at the silent canary")
                metrics = await scrape(client)
                key = {"kind": "model", "resource": "alpha", "revision": "c1", "owner": ""}
                assert metrics[("kaip_gateway_mirror_dropped_total", labels(**key))] == 3
            await until(lambda: silent.dropped == 2, "the copies in flight dropped at stop")

    run(scenario())

"""Revision weights, least-outstanding balancing, retries past dead replicas, per-revision stats."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx
from gateway_harness import BackendProcess, backend, model, run, running, until

AB = tuple[BackendProcess, BackendProcess]


def test_weights_split_traffic_by_revision_and_stats_follow(backends_ab: AB) -> None:
    a, b = backends_ab
    route = model(
        "m",
        {"stable": 80, "canary": 20},
        backend("A", "stable", a.port),
        backend("B", "canary", b.port),
    )

    async def scenario() -> None:
        async with running([route], rng=random.Random(7)) as (gateway, client):
            seen = Counter()
            for _ in range(300):
                seen[(await client.get("/v2/models/m/ready")).json()["replica"]] += 1
            # 20% of 300 is 60, binomial sd ~6.9: bounds ~4 sd wide (and the rng is seeded).
            assert 32 <= seen["B"] <= 88, seen
            await client.get("/v2/models/m/status/503")
            stats = gateway.take_stats("m")
            assert stats["stable"].requests + stats["canary"].requests == 301
            assert stats["stable"].requests == seen["A"] + stats["stable"].errors
            assert stats["stable"].errors + stats["canary"].errors == 1
            assert all(s.p99_ms() is not None for s in stats.values())
            assert gateway.take_stats("m") == {}  # snapshot-and-reset

    run(scenario())


def test_a_pinned_revision_gets_all_its_requests(backends_ab: AB) -> None:
    a, b = backends_ab
    route = model(
        "m",
        {"stable": 90, "canary": 10},
        backend("A", "stable", a.port),
        backend("B", "canary", b.port),
    )

    async def scenario() -> None:
        async with running([route]) as (_, client):
            for _ in range(20):
                answer = await client.get("/v2/models/m/versions/canary/ready")
                assert answer.json()["replica"] == "B"

    run(scenario())


def test_least_outstanding_requests_avoids_the_busy_replica(backends_ab: AB) -> None:
    a, b = backends_ab
    route = model("m", {"r": 100}, backend("A", "r", a.port), backend("B", "r", b.port))

    async def scenario() -> None:
        async with running([route]) as (gateway, client):
            parked = asyncio.create_task(client.get("/v2/models/m/hold?lor"))
            await until(lambda: gateway.load("m").in_flight == 1, "the parked request is in flight")
            free = {(await client.get("/v2/models/m/ready")).json()["replica"] for _ in range(20)}
            assert len(free) == 1  # every request went to the replica with nothing in flight
            (idle,) = free
            (holding,) = {"A", "B"} - free
            assert (gateway.outstanding(holding), gateway.outstanding(idle)) == (1, 0)
            async with httpx.AsyncClient(timeout=10) as direct:  # release on both: keys are sticky
                for port in (a.port, b.port):
                    await direct.get(f"http://127.0.0.1:{port}/release?lor")
            assert (await asyncio.wait_for(parked, 15)).json()["replica"] == holding

    run(scenario())


def test_a_refusing_replica_is_retried_on_another_and_then_avoided(spawn_backend) -> None:  # type: ignore[no-untyped-def]
    live = spawn_backend("L")
    dead = spawn_backend("D")
    dead.kill()  # its port now refuses connections
    route = model("m", {"r": 100}, backend("D", "r", dead.port), backend("L", "r", live.port))

    async def scenario() -> None:
        async with running([route]) as (gateway, client):
            answers = [await client.get("/v2/models/m/ready") for _ in range(20)]
            assert {(r.status_code, r.json()["replica"]) for r in answers} == {(200, "L")}
            assert gateway.take_stats("m")["r"].errors == 0
            gateway.set_routes([model("m", {"r": 100}, backend("D", "r", dead.port))])
            failed = await client.get("/v2/models/m/ready")
            assert failed.status_code == 502 and "m" in failed.json()["error"]
            assert gateway.take_stats("m")["r"].errors == 1

    run(scenario())


def test_sigkill_of_one_replica_under_load_fails_no_request(spawn_backend) -> None:  # type: ignore[no-untyped-def]
    one, two = spawn_backend("one"), spawn_backend("two")
    route = model("m", {"r": 100}, backend("one", "r", one.port), backend("two", "r", two.port))
    workers, per_worker, kill_after = 8, 40, 80

    async def scenario() -> None:
        async with running([route]) as (gateway, client):
            done = 0
            statuses: Counter[int] = Counter()
            after_kill: Counter[str] = Counter()

            async def worker() -> None:
                nonlocal done
                for _ in range(per_worker):
                    answer = await client.post("/v2/models/m/infer", json={"inputs": [1, 2, 3]})
                    statuses[answer.status_code] += 1
                    done += 1
                    if done == kill_after:
                        one.process.kill()  # SIGKILL, mid-load, with requests in flight
                    elif done > kill_after + 3 * workers:
                        after_kill[answer.json()["replica"]] += 1

            await asyncio.gather(*(worker() for _ in range(workers)))
            assert statuses == Counter({200: workers * per_worker})
            assert set(after_kill) == {"two"}
            assert sum(s.errors for s in gateway.take_stats("m").values()) == 0

    run(scenario())

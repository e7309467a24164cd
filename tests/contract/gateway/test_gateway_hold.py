"""Scale from zero: requests for a route with no backend are held, then served or refused."""

from __future__ import annotations

import asyncio

from gateway_harness import BackendProcess, backend, model, run, running

from kaip.local.gateway import Gateway

AB = tuple[BackendProcess, BackendProcess]


def test_a_held_request_is_served_once_a_backend_appears(backends_ab: AB) -> None:
    a, _ = backends_ab
    asked: list[tuple[str, int]] = []
    holder: list[Gateway] = []

    def on_demand(name: str) -> None:
        gateway = holder[0]
        asked.append((name, gateway.load(name).held))
        ready = model("m", {"r": 100}, backend("A", "r", a.port))
        asyncio.get_running_loop().call_soon(gateway.set_routes, [ready])

    async def scenario() -> None:
        async with running([model("m", {"r": 100})], on_demand=on_demand) as (gateway, client):
            holder.append(gateway)
            answer = await client.get("/v2/models/m/ready")
            assert (answer.status_code, answer.json()["replica"]) == (200, "A")
            assert asked == [("m", 1)]
            assert gateway.load("m").held == 0 and gateway.load("m").last_request_at is not None

    run(scenario())


def test_past_the_hold_timeout_the_answer_is_503_with_retry_after() -> None:
    async def scenario() -> None:
        async with running([model("m", {"r": 100})], hold_timeout_s=0.2) as (gateway, client):
            answer = await client.post("/v2/models/m/infer", json={})
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "1"
            assert "no ready replica" in answer.json()["error"]
            assert gateway.load("m").held == 0

    run(scenario())


def test_a_full_hold_queue_refuses_at_once_and_held_requests_still_complete(
    backends_ab: AB,
) -> None:
    a, _ = backends_ab

    async def scenario() -> None:
        options = {"hold_timeout_s": 60.0, "max_held": 1}
        async with running([model("m", {"r": 100})], **options) as (gateway, client):
            first = asyncio.create_task(client.get("/v2/models/m/ready"))
            for _ in range(1000):
                if gateway.load("m").held == 1:
                    break
                await asyncio.sleep(0.01)
            second = await client.get("/v2/models/m/ready")
            assert second.status_code == 503 and second.headers["retry-after"] == "1"
            gateway.set_routes([model("m", {"r": 100}, backend("A", "r", a.port))])
            assert (await asyncio.wait_for(first, 15)).json()["replica"] == "A"

    run(scenario())


def test_a_route_removed_while_held_answers_404() -> None:
    async def scenario() -> None:
        async with running([model("m", {"r": 100})]) as (gateway, client):
            held = asyncio.create_task(client.get("/v2/models/m/ready"))
            for _ in range(1000):
                if gateway.load("m").held == 1:
                    break
                await asyncio.sleep(0.01)
            gateway.set_routes([])
            assert (await asyncio.wait_for(held, 15)).status_code == 404

    run(scenario())

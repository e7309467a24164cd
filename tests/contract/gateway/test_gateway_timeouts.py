"""Replicas that accept a request and never answer: the gateway gives up on them, and avoids them.

The hanging replica is a real socket server on 127.0.0.1 that accepts connections and reads
every byte sent to it but never writes one; it counts the requests it was sent and notices when
the gateway drops a connection. Timeouts are a fraction of a second so the tests stay short; the
only time bounds are the generous ``wait_for`` limits that keep a hanging gateway from hanging
the suite.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import httpx
import openai
import pytest
from gateway_harness import (
    BackendProcess,
    app,
    backend,
    hanging_replica,
    model,
    open_chat_stream,
    run,
    running,
    until,
)


def test_a_hanging_canary_replica_is_given_up_on_retried_elsewhere_counted_and_avoided(
    spawn_backend,  # type: ignore[no-untyped-def]
) -> None:
    live = spawn_backend("L")

    async def scenario() -> None:
        async with hanging_replica() as hung:
            route = model(
                "m",
                {"stable": 50, "canary": 50},
                backend("L", "stable", live.port),
                backend("H", "canary", hung.port),
            )
            # The route's own timeout, not the default; long enough that L, a real process on a
            # busy machine, always answers within it (only H is meant to time out).
            route = replace(route, response_timeout_s=3.0)
            async with running([route], rng=random.Random(3)) as (gateway, client):
                sent = 0
                while not hung.requests and sent < 40:  # even odds each to go to H first
                    answer = await asyncio.wait_for(client.post("/v2/models/m/infer"), 15)
                    assert (answer.status_code, answer.json()["replica"]) == (200, "L")
                    sent += 1
                assert hung.requests == 1, "no request ever went to the hanging replica"
                await until(lambda: hung.dropped == 1, "the gateway to drop H's connection")
                assert hung.open == 0  # aborted, not pooled for the next request
                stats = gateway.take_stats("m")
                assert (stats["canary"].requests, stats["canary"].errors) == (1, 1)
                assert (stats["stable"].requests, stats["stable"].errors) == (sent, 0)

                for _ in range(30):  # H is ejected: canary traffic goes to stable meanwhile
                    answer = await asyncio.wait_for(client.post("/v2/models/m/infer"), 15)
                    assert (answer.status_code, answer.json()["replica"]) == (200, "L")
                assert hung.requests == 1
                assert gateway.outstanding("H") == 0

    run(scenario())


def test_with_only_hanging_replicas_the_answer_is_a_504_naming_replica_and_timeout() -> None:
    async def scenario() -> None:
        async with hanging_replica() as hung:
            route = model("m", {"r1": 100}, backend("H", "r1", hung.port))
            async with running([route], response_timeout_s=0.2) as (gateway, client):
                for sent in (1, 2):  # ejected but the only one: tried again, answered again
                    answer = await asyncio.wait_for(client.post("/v2/models/m/infer"), 15)
                    assert answer.status_code == 504
                    error = answer.json()["error"]
                    assert "'H'" in error and "'r1'" in error and "0.2 s" in error, error
                    assert hung.requests == sent
                stats = gateway.take_stats("m")["r1"]
                assert (stats.requests, stats.errors) == (2, 2)
                await until(lambda: hung.open == 0, "H's connections to be dropped")

                client_ai = openai.AsyncOpenAI(
                    base_url=str(client.base_url).rstrip("/") + "/v1",
                    api_key="unused",
                    max_retries=0,
                )
                with pytest.raises(openai.APIStatusError) as raised:
                    await asyncio.wait_for(
                        client_ai.chat.completions.create(
                            model="m", messages=[{"role": "user", "content": "hi"}]
                        ),
                        15,
                    )
                assert raised.value.status_code == 504
                body = raised.value.body
                assert isinstance(body, dict) and body["type"] == "server_error"
                assert "no response within 0.2 s" in body["message"]
                await client_ai.close()

    run(scenario())


def test_a_timed_out_request_is_retried_once_not_on_every_replica() -> None:
    async def scenario() -> None:
        async with hanging_replica() as one, hanging_replica() as two, hanging_replica() as three:
            route = app(
                "web",
                backend("H1", "w1", one.port),
                backend("H2", "w1", two.port),
                backend("H3", "w1", three.port),
            )
            async with running([route], response_timeout_s=0.2) as (gateway, client):
                answer = await asyncio.wait_for(client.post("/apps/web/orders", json={}), 15)
                assert answer.status_code == 504
                assert "as did another replica before it" in answer.json()["error"]
                assert sorted(h.requests for h in (one, two, three)) == [0, 1, 1]
                stats = gateway.take_stats("web")["w1"]
                assert (stats.requests, stats.errors) == (2, 2)

    run(scenario())


def test_a_stream_outlives_the_response_timeout_once_its_head_is_in(spawn_backend) -> None:  # type: ignore[no-untyped-def]
    """The replica sends its head and one event, then waits far past the timeout to finish."""
    b = spawn_backend("B")

    async def scenario() -> None:
        route = model("beta", {"b1": 100}, backend("B", "b1", b.port))
        # B's head must come within the timeout even on a busy machine; the stream then stays
        # open for three timeouts.
        async with running([route], response_timeout_s=2.0) as (gateway, http):
            client, chunks, first = await open_chat_stream(http)
            assert first.choices[0].delta.content == "first"
            await asyncio.sleep(6.0)  # three response timeouts with the stream open
            await _release(b, "chat")
            rest = [c.choices[0].delta.content async for c in chunks]
            assert rest == ["second"]
            assert gateway.take_stats("beta")["b1"].errors == 0
            await client.close()

    run(scenario())


async def _release(replica: BackendProcess, key: str) -> None:
    """Release a parked request on the replica directly."""
    async with httpx.AsyncClient(timeout=10) as direct:
        await direct.get(f"http://127.0.0.1:{replica.port}/release?{key}")

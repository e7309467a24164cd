"""The gateway routes by model name, OpenAI ``model`` field and App prefix, to real replicas."""

from __future__ import annotations

import openai
import pytest
from gateway_harness import BackendProcess, app, backend, model, open_chat_stream, run, running

AB = tuple[BackendProcess, BackendProcess]


def routes_for(a: BackendProcess, b: BackendProcess) -> list:  # type: ignore[type-arg]
    return [
        model("alpha", {"a1": 100}, backend("A", "a1", a.port)),
        model("beta", {"b1": 100}, backend("B", "b1", b.port)),
        app("web", backend("B", "w1", b.port)),
    ]


def test_oip_paths_route_by_model_name_and_forward_as_is(backends_ab: AB) -> None:
    async def scenario() -> None:
        async with running(routes_for(*backends_ab)) as (_, client):
            a = await client.post("/v2/models/alpha/infer", json={"inputs": []})
            b = await client.get("/v2/models/beta/versions/b1/ready?verbose=1")
            assert (a.status_code, a.json()["replica"]) == (200, "A")
            assert a.json()["path"] == "/v2/models/alpha/infer"
            assert a.json()["body_len"] == len(b'{"inputs":[]}')
            assert (b.json()["replica"], b.json()["path"]) == (
                "B",
                "/v2/models/beta/versions/b1/ready?verbose=1",
            )

            missing = await client.post("/v2/models/gamma/infer", json={})
            assert missing.status_code == 404 and "gamma" in missing.json()["error"]
            bad_rev = await client.get("/v2/models/alpha/versions/zz/ready")
            assert bad_rev.status_code == 404 and "zz" in bad_rev.json()["error"]
            assert (await client.get("/nowhere")).status_code == 404

    run(scenario())


def test_gateway_answers_health_and_metadata_itself(backends_ab: AB) -> None:
    async def scenario() -> None:
        async with running([]) as (_, client):
            assert (await client.get("/v2/health/live")).json() == {"live": True}
            assert (await client.get("/v2/health/ready")).json() == {"ready": True}
            assert (await client.get("/v2")).json()["name"] == "kaip-gateway"

    run(scenario())


def test_openai_client_is_routed_by_the_model_field(backends_ab: AB) -> None:
    async def scenario() -> None:
        async with running(routes_for(*backends_ab)) as (_, http):
            client = openai.AsyncOpenAI(
                base_url=str(http.base_url).rstrip("/") + "/v1", api_key="unused", max_retries=0
            )
            answer = await client.chat.completions.create(
                model="beta", messages=[{"role": "user", "content": "hi"}]
            )
            assert answer.choices[0].message.content == "B"
            listed = [m.id async for m in client.models.list()]
            assert listed == ["alpha", "beta"]
            assert (await client.models.retrieve("alpha")).id == "alpha"
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(model="nope", messages=[])
            no_model = await http.post("/v1/embeddings", json={"input": "x"})
            assert no_model.status_code == 400 and "model" in no_model.json()["error"]["message"]
            await client.close()

    run(scenario())


def test_apps_are_routed_by_prefix_with_the_prefix_stripped(backends_ab: AB) -> None:
    async def scenario() -> None:
        async with running(routes_for(*backends_ab)) as (_, client):
            page = (await client.get("/apps/web/hello/there?x=1")).json()
            assert (page["replica"], page["path"], page["prefix"]) == (
                "B",
                "/hello/there?x=1",
                "/apps/web",
            )
            assert (await client.get("/apps/web")).json()["path"] == "/"
            assert (await client.get("/apps/other/")).status_code == 404

    run(scenario())


def test_a_gateway_not_tracing_passes_the_client_s_traceparent_on_and_mints_none(
    backends_ab: AB,
) -> None:
    """Without a span recorder the gateway takes no part in the trace: a minted ``-01`` would
    make a traced replica behind it trace every request, a minted ``-00`` none (trace.py)."""
    sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"

    async def scenario() -> None:
        async with running(routes_for(*backends_ab)) as (_, client):
            for given in (sampled, unsampled):
                kept = await client.get("/v2/models/alpha/ready", headers={"traceparent": given})
                assert kept.json()["traceparent"] == given
                posted = await client.post(
                    "/v2/models/alpha/infer", json={}, headers={"traceparent": given}
                )
                assert posted.json()["traceparent"] == given
            none = await client.post("/v2/models/alpha/infer", json={"inputs": []})
            assert none.json()["traceparent"] == "" and "traceparent" not in none.json()["headers"]
            assert none.json()["body_len"] == len(b'{"inputs":[]}')
            bad = await client.get("/v2/models/alpha/ready", headers={"traceparent": "garbage"})
            assert bad.json()["traceparent"] == ""

    run(scenario())


def test_sse_streams_through_before_the_replica_finishes(backends_ab: AB) -> None:
    """The replica sends one event and then waits to be released: a buffering proxy would hang."""

    async def scenario() -> None:
        async with running(routes_for(*backends_ab)) as (_, http):
            client, chunks, first = await open_chat_stream(http)
            assert first.choices[0].delta.content == "first"
            await http.post("/v2/models/beta/release?chat")
            rest = [c.choices[0].delta.content async for c in chunks]
            assert rest == ["second"]
            await client.close()

    run(scenario())


def test_the_traffic_port_serves_no_admin_api_and_names_the_control_port() -> None:
    """Apps share the traffic port's origin, so the admin API is never reachable through it."""

    async def scenario() -> None:
        async with running([], control_url="http://127.0.0.1:8181") as (_, client):
            for method in ("GET", "POST"):
                answer = await client.request(method, "/_kaip/deploy", json={"paths": ["/x"]})
                assert answer.status_code == 404
                assert "http://127.0.0.1:8181/_kaip/" in answer.json()["error"]
            root = await client.get("/")  # the portal lives on the control port
            assert root.status_code == 307
            assert root.headers["location"] == "http://127.0.0.1:8181/"

    run(scenario())

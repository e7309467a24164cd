"""The gateway finds Models by their served names, lists only OpenAI Models, answers for itself.

Real replicas (``gateway_backend.py``, which says who answered and what path arrived) behind a
real :class:`~kaip.local.gateway.Gateway`.
"""

from __future__ import annotations

from urllib.parse import unquote

import openai
import pytest
from gateway_harness import AB, backend, model, run, running

from kaip import __version__
from kaip.local.gateway import Route

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
CREATED = 1_790_000_000.0


def routes_for(a_port: int, b_port: int) -> list[Route]:
    return [
        Route(
            kind="model",
            name="llama",
            weights={"r1": 100, "r2": 0},
            backends=(backend("A", "r1", a_port), backend("B", "r2", b_port)),
            revision_names={"r1": (LLAMA, "llama3"), "r2": (LLAMA, "llama3", "llama3:new")},
            created=CREATED,
        ),
        Route(
            kind="model",
            name="simple",
            weights={"s1": 100},
            backends=(backend("A", "s1", a_port),),
            openai=False,
        ),
    ]


def test_oip_paths_reach_a_model_by_any_served_name_slashes_included(backends_ab: AB) -> None:
    a, b = backends_ab

    async def scenario() -> None:
        async with running(routes_for(a.port, b.port)) as (_, client):
            encoded = "/v2/models/meta-llama%2FLlama-3.1-8B-Instruct/infer"
            for path in (
                f"/v2/models/{LLAMA}/infer",
                encoded,
                "/v2/models/llama3/versions/r1/infer",
            ):
                answer = await client.post(path, json={"inputs": []})
                assert (answer.status_code, answer.json()["replica"]) == (200, "A"), path
                assert answer.json()["path"] == unquote(path)  # as sent: the replica serves it
            # A name only the new revision serves goes to it, whatever the weights say.
            new = await client.post("/v2/models/llama3:new/infer", json={"inputs": []})
            assert new.json()["replica"] == "B"
            # The resource name is not a served name once serve.names is set.
            resource = await client.post("/v2/models/llama/infer", json={"inputs": []})
            assert resource.status_code == 404
            assert resource.json() == {"error": "Request for unknown model: 'llama' is not found"}
            models = await client.get("/v2/models")
            assert models.json() == {"models": sorted([LLAMA, "llama3", "llama3:new", "simple"])}

    run(scenario())


def test_openai_lists_and_reaches_only_models_that_serve_it(backends_ab: AB) -> None:
    a, b = backends_ab

    async def scenario() -> None:
        async with running(routes_for(a.port, b.port)) as (_, client):
            sdk = openai.AsyncOpenAI(
                base_url=str(client.base_url).rstrip("/") + "/v1", api_key="unused", max_retries=0
            )
            try:
                cards = (await sdk.models.list()).data
                assert [c.id for c in cards] == sorted([LLAMA, "llama3", "llama3:new"])
                assert {c.created for c in cards} == {int(CREATED)}
                assert (await sdk.models.retrieve(LLAMA)).id == LLAMA
                with pytest.raises(openai.NotFoundError, match="does not serve the OpenAI API"):
                    await sdk.models.retrieve("simple")
                with pytest.raises(openai.NotFoundError, match="does not serve the OpenAI API"):
                    await sdk.completions.create(model="simple", prompt="x")
                raw = await client.post("/v1/completions", json={"model": "llama3:new"})
                assert raw.json()["replica"] == "B"
                bad = await client.post("/v1/completions", content=b"not json")
                assert bad.status_code == 400 and bad.json()["error"]["type"]
            finally:
                await sdk.close()

    run(scenario())


def test_server_metadata_is_complete(backends_ab: AB) -> None:
    a, b = backends_ab

    async def scenario() -> None:
        async with running(routes_for(a.port, b.port)) as (gateway, client):
            meta = (await client.get("/v2")).json()
            assert meta == {
                "name": "kaip-gateway",
                "version": __version__,
                "extensions": ["binary_tensor_data", "statistics", "openai"],
            }
            gateway.set_routes([model("only-oip", {"o1": 100}, backend("A", "o1", a.port))])
            # a Route made without openai=False serves it; one that does not says so
            gateway.set_routes(
                [Route("model", "x", {"o1": 100}, (backend("A", "o1", a.port),), openai=False)]
            )
            assert (await client.get("/v2")).json()["extensions"] == [
                "binary_tensor_data",
                "statistics",
            ]
            repository = await client.post("/v2/repository/index")
            assert repository.status_code == 501
            assert "kaip deploy" in repository.json()["error"]

    run(scenario())

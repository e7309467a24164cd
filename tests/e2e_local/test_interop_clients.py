"""Clients no one here wrote, against ``kaip serve`` and the ``kaip up`` gateway.

Triton's example clients (vendored unmodified, see :mod:`interop_clients`) with the models they
expect (``examples/triton``: ``simple``, ``simple_string``, ``simple_identity``, served by kaip's
python runtime under those names); the ``openai`` SDK reaching a Model by a served name with a
``/``; KServe's ``InferenceRESTClient`` reading the gateway's server metadata.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from interop_clients import EXAMPLES, SCRIPTS, assert_passed, run_example, serve
from local_platform import LocalPlatform

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
STRING_MODELS = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: string-models}
spec:
  owner: tests
  artifact: {uri: model.py, format: python, entrypoint: "model:StringModels", trust: true}
  serve: {names: [simple_string, simple_identity]}
"""


@pytest.fixture(scope="module")
def started_at() -> float:
    return time.time()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, started_at: float) -> Iterator[LocalPlatform]:
    """``kaip up`` of examples/triton (``simple`` with two replicas) and tiny-lm as ``LLAMA``."""
    workdir = tmp_path_factory.mktemp("interop")
    spec = workdir / "spec"
    shutil.copytree(EXAMPLES / "triton", spec / "triton")
    triton = spec / "triton" / "kaip.yaml"
    simple = 'entrypoint: "model:Simple", trust: true}\n'
    text = triton.read_text()
    assert simple in text, "examples/triton changed: give 'simple' two replicas another way"
    triton.write_text(
        text.replace(simple, simple + "  scaling: {minReplicas: 2, maxReplicas: 2}\n")
    )
    shutil.copytree(EXAMPLES / "tiny-lm", spec / "llm")
    llm = spec / "llm" / "kaip.yaml"
    llm.write_text(llm.read_text() + f"    names: [{LLAMA}]\n")
    platform = LocalPlatform(workdir)
    platform.up(spec)
    try:
        yield platform
    finally:
        platform.down()


def address(platform: LocalPlatform) -> str:
    return platform.url.removeprefix("http://")


# -- Triton's example clients -------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_tritons_example_clients_pass_through_the_gateway(
    gateway: LocalPlatform, script: str
) -> None:
    assert_passed(script, run_example(script, address(gateway)))


@pytest.mark.parametrize("script", [s for s in SCRIPTS if "string" not in s])
def test_tritons_simple_examples_pass_against_kaip_serve(script: str, tmp_path: Path) -> None:
    with serve(EXAMPLES / "triton", "simple", tmp_path) as served:
        assert_passed(script, run_example(script, served))
        if script == "simple_http_infer_client.py":
            for algorithm in ("gzip", "deflate"):
                flags = ("--request-compression-algorithm", algorithm,
                         "--response-compression-algorithm", algorithm)  # fmt: skip
                assert_passed(script, run_example(script, served, *flags))


def test_tritons_string_example_passes_against_kaip_serve(tmp_path: Path) -> None:
    """``kaip serve`` runs one Model; the string example calls two names on one address, so
    one Model serves both (the gateway test serves them as two Models)."""
    spec = tmp_path / "spec"
    spec.mkdir()
    shutil.copy(EXAMPLES / "triton" / "model.py", spec / "model.py")
    (spec / "kaip.yaml").write_text(STRING_MODELS)
    script = "simple_http_string_infer_client.py"
    with serve(spec, "string-models", tmp_path / "server") as served:
        assert_passed(script, run_example(script, served))


# -- Triton's statistics, summed over a revision's replicas --------------------------------------


def _replica_stats(platform: LocalPlatform, name: str) -> list[dict[str, Any]]:
    replicas = [r for r in platform.resource(name)["replicas"] if r["routed"]]
    assert len(replicas) == 2, replicas
    return [
        httpx.get(f"http://127.0.0.1:{r['port']}/v2/models/{name}/stats", trust_env=False).json()[
            "model_stats"
        ][0]
        for r in replicas
    ]


def test_gateway_statistics_are_the_sum_of_the_revisions_replicas(gateway: LocalPlatform) -> None:
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [2, 16], "datatype": "INT32", "data": list(range(32))},
            {"name": "INPUT1", "shape": [2, 16], "datatype": "INT32", "data": [1] * 32},
        ]
    }
    with httpx.Client(base_url=gateway.url, trust_env=False, timeout=30) as client:
        for _ in range(12):
            assert client.post("/v2/models/simple/infer", json=body).status_code == 200
        assert client.post("/v2/models/simple/infer", json={"inputs": []}).status_code == 400
        (summed,) = client.get("/v2/models/simple/stats").json()["model_stats"]
        everything = client.get("/v2/models/stats").json()["model_stats"]
        metadata = client.get("/v2").json()
    parts = _replica_stats(gateway, "simple")
    assert all(p["inference_count"] > 0 for p in parts), "the gateway spreads over both replicas"
    revision = gateway.resource("simple")["stable"]
    assert summed["name"] == "simple" and summed["version"] == revision
    assert summed["inference_count"] == sum(p["inference_count"] for p in parts) >= 24
    assert summed["execution_count"] == sum(p["execution_count"] for p in parts)
    for field in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
        assert summed["inference_stats"][field] == {
            key: sum(p["inference_stats"][field][key] for p in parts) for key in ("count", "ns")
        }
    assert summed["inference_stats"]["fail"]["count"] >= 1
    assert summed["last_inference"] == max(p["last_inference"] for p in parts)
    sizes = {b["batch_size"] for p in parts for b in p["batch_stats"]}
    assert {b["batch_size"] for b in summed["batch_stats"]} == sizes
    names = sorted(entry["name"] for entry in everything)
    assert names == sorted([LLAMA, "simple", "simple_identity", "simple_string"])
    assert metadata["extensions"] == ["binary_tensor_data", "statistics", "openai"]
    assert metadata["version"]


# -- OpenAI: a served name with a slash; only Models that serve OpenAI; OpenAI-shaped errors -----


def test_the_openai_sdk_reaches_a_model_by_a_served_name_with_a_slash(
    gateway: LocalPlatform, started_at: float
) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    chat = client.chat.completions.create(
        model=LLAMA, messages=[{"role": "user", "content": "hello kaip"}], max_tokens=4
    )
    assert chat.model == LLAMA and chat.choices[0].message.content
    completion = client.completions.create(model=LLAMA, prompt="one two three", max_tokens=2)
    assert completion.model == LLAMA
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model=LLAMA, messages=[{"role": "user", "content": "a b c"}], stream=True
        )
        if chunk.choices
    ]
    assert "".join(pieces)
    models = client.models.list().data
    assert [m.id for m in models] == [LLAMA]  # the Triton models do not serve OpenAI
    card = client.models.retrieve(LLAMA)
    assert card.id == LLAMA
    assert started_at - 1 <= card.created <= time.time()  # when kaip up created the Model


def test_openai_errors_are_openai_shaped_whatever_the_cause(gateway: LocalPlatform) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="does not serve the OpenAI API"):
        client.chat.completions.create(model="simple", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError, match="'tiny-lm' does not exist"):
        client.chat.completions.create(model="tiny-lm", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("simple")
    with httpx.Client(base_url=gateway.url, trust_env=False) as raw:
        v1 = raw.post("/v1/models/simple:predict", json={"instances": [[1]]})
        assert v1.status_code == 501
        assert "Open Inference Protocol" in v1.json()["error"]["message"]
        unknown_route = raw.post("/v1/not-a-route", json={"model": LLAMA})
        assert unknown_route.status_code == 404 and "message" in unknown_route.json()["error"]


# -- KServe's REST client and data models ------------------------------------------------------


def test_kserves_rest_client_and_models_read_the_gateway(gateway: LocalPlatform) -> None:
    """KServe's ``InferenceRESTClient`` (v2) talks to the gateway; the metadata it has no method
    for is parsed with KServe's own response models, as its server defines them."""
    import asyncio

    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.rest.v2_datamodels import (
        ListModelsResponse,
        ModelMetadataResponse,
        ServerMetadataResponse,
    )

    async def talk() -> tuple[bool, bool, bool, Any]:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            a = InferInput("INPUT0", [1, 16], "INT32")
            a.set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
            b = InferInput("INPUT1", [1, 16], "INT32")
            b.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
            request = InferRequest(model_name="simple", infer_inputs=[a, b], request_id="k1")
            return (
                await client.is_server_live(gateway.url),
                await client.is_server_ready(gateway.url),
                await client.is_model_ready(gateway.url, "simple_identity"),
                await client.infer(gateway.url, request, model_name="simple"),
            )
        finally:
            await client.close()

    live, ready, model_ready, response = asyncio.run(talk())
    assert live and ready and model_ready
    assert response.id == "k1" and response.model_name == "simple"
    outputs = {o.name: o.as_numpy() for o in response.outputs}
    np.testing.assert_array_equal(outputs["OUTPUT0"], np.arange(1, 17).reshape(1, 16))
    with httpx.Client(base_url=gateway.url, trust_env=False) as raw:
        server = ServerMetadataResponse.model_validate_json(raw.get("/v2").content)
        model = ModelMetadataResponse.model_validate_json(
            raw.get("/v2/models/simple_string").content
        )
        listed = ListModelsResponse.model_validate_json(raw.get("/v2/models").content)
    assert server.name == "kaip-gateway" and server.version
    assert server.extensions == ["binary_tensor_data", "statistics", "openai"]
    assert model.name == "simple_string" and [i.name for i in model.inputs] == ["INPUT0", "INPUT1"]
    assert listed.models == sorted([LLAMA, "simple", "simple_identity", "simple_string"])


# -- extensions kaip does not implement ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "extension"),
    [
        ("POST", "/v2/repository/index", "model_repository"),
        ("POST", "/v2/repository/models/simple/load", "model_repository"),
        ("GET", "/v2/systemsharedmemory/status", "system_shared_memory"),
        ("GET", "/v2/cudasharedmemory/status", "cuda_shared_memory"),
        ("GET", "/v2/trace/setting", "trace"),
        ("GET", "/v2/logging", "logging"),
        ("GET", "/v2/models/simple/config", "model_configuration"),
        ("POST", f"/v2/models/{LLAMA}/generate", "generate"),
    ],
)
def test_unsupported_extensions_get_501_and_what_to_use(
    gateway: LocalPlatform, method: str, path: str, extension: str
) -> None:
    response = httpx.request(method, gateway.url + path, trust_env=False, json={})
    assert response.status_code == 501
    assert f"the {extension} extension" in response.json()["error"]


def test_unknown_models_get_tritons_message_and_a_sequence_request_a_400(
    gateway: LocalPlatform,
) -> None:
    with httpx.Client(base_url=gateway.url, trust_env=False) as client:
        missing = client.post("/v2/models/org/nothing/infer", json={})
        assert missing.status_code == 404
        assert missing.json() == {"error": "Request for unknown model: 'org/nothing' is not found"}
        body = {
            "parameters": {"sequence_id": 7, "sequence_start": True},
            "inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": [0] * 16}],
        }
        sequence = client.post("/v2/models/simple/infer", json=body)
        assert sequence.status_code == 400
        assert "'sequence_id' is part of the sequence extension" in sequence.json()["error"]
        encoded = client.get(f"/v2/models/{LLAMA.replace('/', '%2F')}")
        assert encoded.status_code == 200 and encoded.json()["name"] == LLAMA


def test_deploying_a_model_that_takes_a_served_name_is_refused(gateway: LocalPlatform) -> None:
    copycat = gateway.spec_dir.parent / "copycat" / "kaip.yaml"
    copycat.parent.mkdir()
    shutil.copy(EXAMPLES / "triton" / "model.py", copycat.parent / "model.py")
    copycat.write_text(
        "apiVersion: kaip.dev/v1alpha1\nkind: Model\nmetadata: {name: copycat}\nspec:\n"
        "  owner: tests\n  artifact: {uri: model.py, format: python, entrypoint: 'model:Simple',"
        " trust: true}\n"
        "  serve: {names: [simple_string/v2]}\n"
    )
    refused = gateway.cli("deploy", str(copycat))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert (
        "Model 'copycat' would serve the name 'simple_string/v2', but Model 'simple-string' "
        "serves 'simple_string', which overlaps it" in refused.stderr
    )
    assert "copycat" not in [r["name"] for r in gateway.status()["resources"]]

"""What clients written for Triton, KServe and OpenAI expect of one ``kaip serve``: Triton's
statistics of batched requests, served names with '/', OpenAI-shaped answers on every /v1 path."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from model_server.harness import ROOT, RunningServer, start_server
from model_server.test_serving_batching import body, fire

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """examples/tiny-lm served as ``LLAMA`` and ``tiny``, not by its resource name."""
    directory = tmp_path_factory.mktemp("llama")
    shutil.copytree(ROOT / "examples" / "tiny-lm", directory / "spec")
    spec = directory / "spec" / "kaip.yaml"
    spec.write_text(spec.read_text() + f"    names: [{LLAMA}, tiny]\n")
    server = start_server(directory / "spec", "tiny-lm", directory / "server", cli=True)
    yield server
    server.stop()


def stats(server: RunningServer, name: str) -> dict[str, Any]:
    (entry,) = httpx.get(f"{server.url}/v2/models/{name}/stats").json()["model_stats"]
    return dict(entry)


def test_statistics_of_batched_requests_add_up(counting_server: RunningServer) -> None:
    before = stats(counting_server, "counting")
    rows = [1, 2, 3, 1] * 6
    inputs = [np.full((n, 3), float(n)) for n in rows]
    url = f"{counting_server.url}/v2/models/counting/infer"
    responses = asyncio.run(fire(url, [body(x) for x in inputs]))
    assert all(r.status_code == 200 for r in responses)
    bad = httpx.post(url, json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP64"}]})
    assert bad.status_code == 400
    after = stats(counting_server, "counting")

    def delta(*path: str) -> int:
        a: Any = after
        b: Any = before
        for key in path:
            a, b = a[key], b[key]
        return int(a) - int(b)

    assert delta("inference_count") == sum(rows)
    assert 0 < delta("execution_count") < len(rows)  # concurrent requests shared predict calls
    for field in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert delta("inference_stats", field, "count") == len(rows), field
    assert delta("inference_stats", "fail", "count") == 1
    assert delta("inference_stats", "compute_infer", "ns") > 0
    batches = {b["batch_size"]: b["compute_infer"]["count"] for b in after["batch_stats"]}
    earlier = {b["batch_size"]: b["compute_infer"]["count"] for b in before["batch_stats"]}
    executed = {size: n - earlier.get(size, 0) for size, n in batches.items()}
    assert sum(size * n for size, n in executed.items()) == sum(rows)
    assert max(executed) > 3  # some call held more than one request's rows


def test_openai_sdk_and_oip_reach_the_model_by_each_served_name(
    llama_server: RunningServer,
) -> None:
    client = openai.OpenAI(base_url=f"{llama_server.url}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == [LLAMA, "tiny"]
    assert client.models.retrieve(LLAMA).id == LLAMA
    for name in (LLAMA, "tiny"):
        chat = client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "one two"}], max_tokens=3
        )
        assert chat.model == name and chat.choices[0].message.content
        chunks = list(
            client.chat.completions.create(
                model=name,
                messages=[{"role": "user", "content": "one two"}],
                max_tokens=3,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[-1].usage is not None  # the usage chunk is named too
        assert {chunk.model for chunk in chunks} == {name}
        assert client.embeddings.create(model=name, input="one two").model == name
    with pytest.raises(openai.NotFoundError, match="'tiny-lm' does not exist"):
        client.completions.create(model="tiny-lm", prompt="x")
    meta = httpx.get(f"{llama_server.url}/v2/models/{LLAMA}")
    assert meta.status_code == 200 and meta.json()["name"] == LLAMA
    encoded = httpx.get(f"{llama_server.url}/v2/models/meta-llama%2FLlama-3.1-8B-Instruct/ready")
    assert encoded.json() == {"name": LLAMA, "ready": True}
    assert httpx.get(f"{llama_server.url}/v2/models").json() == {"models": [LLAMA, "tiny"]}
    server = httpx.get(f"{llama_server.url}/v2").json()
    assert server["extensions"] == ["binary_tensor_data", "statistics", "openai"]


def test_every_v1_answer_is_openai_shaped_even_with_the_api_off(
    digits_server: RunningServer,
) -> None:
    client = openai.OpenAI(base_url=f"{digits_server.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="the OpenAI API is off for model 'digits'"):
        client.models.list()
    v1 = httpx.post(f"{digits_server.url}/v1/models/digits:predict", json={"instances": []})
    assert v1.status_code == 501 and "Open Inference Protocol" in v1.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("POST", "/v2/repository/index", 501, "model_repository extension"),
        ("GET", "/v2/models/digits/config", 501, "model_configuration extension"),
        ("GET", "/v2/models/digits/versions/1/trace/setting", 501, "trace extension"),
        ("POST", "/v2/models/digits/generate", 501, "generate extension"),
        ("GET", "/v2/cudasharedmemory/status", 501, "cuda_shared_memory extension"),
        ("POST", "/v2/models/digits/stats", 405, "use GET"),
        ("GET", "/v2/models/nope/stats", 404, "Request for unknown model: 'nope'"),
    ],
)
def test_extension_routes_answer_with_a_status_and_what_to_use(
    digits_server: RunningServer, method: str, path: str, status: int, words: str
) -> None:
    response = httpx.request(method, digits_server.url + path)
    assert response.status_code == status
    assert words in response.json()["error"]


@pytest.mark.parametrize(
    ("parameters", "outputs", "words"),
    [
        ({"sequence_id": 3}, None, "'sequence_id' is part of the sequence extension"),
        ({"priority": 2}, None, "'priority' is part of the schedule_policy extension"),
        ({"timeout": 1000}, None, "'timeout' is part of the schedule_policy extension"),
        ({}, [{"name": "output-0", "parameters": {"classification": 2}}], "classification"),
    ],
)
def test_parameters_of_extensions_kaip_lacks_get_a_400_naming_them(
    digits_server: RunningServer, parameters: dict[str, Any], outputs: Any, words: str
) -> None:
    request: dict[str, Any] = {
        "id": "p1",
        "parameters": parameters,
        "inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP64", "data": [0] * 64}],
    }
    if outputs is not None:
        request["outputs"] = outputs
    response = httpx.post(f"{digits_server.url}/v2/models/digits/infer", json=request)
    assert response.status_code == 400 and words in response.json()["error"]
    # The protocol's "not set" values are not a request for the extension.
    request["parameters"] = {"sequence_id": 0, "priority": 0, "custom": "kept"}
    request.pop("outputs", None)
    ok = httpx.post(f"{digits_server.url}/v2/models/digits/infer", json=request)
    assert ok.status_code == 200 and ok.json()["id"] == "p1"

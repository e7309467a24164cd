"""Adaptive batching through the real server: concurrent requests share predict calls, results
split back exactly, and a request the model rejects fails alone."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np

from model_server.harness import RunningServer


def body(values: np.ndarray, poison: float = 0.0) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "x", "shape": list(values.shape), "datatype": "FP64",
             "data": values.ravel().tolist()},
            {"name": "poison", "shape": [values.shape[0]], "datatype": "FP64",
             "data": [poison] * values.shape[0]},
        ]
    }  # fmt: skip


async def fire(url: str, bodies: list[dict[str, object]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        return await asyncio.gather(*(client.post(url, json=b) for b in bodies))


def test_concurrent_requests_share_predict_calls(counting_server: RunningServer) -> None:
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(int(rng.integers(1, 4)), 3)) for _ in range(32)]
    url = f"{counting_server.url}/v2/models/counting/infer"
    responses = asyncio.run(fire(url, [body(x) for x in inputs]))
    calls = set()
    for x, response in zip(inputs, responses, strict=True):
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        assert outputs["x"]["shape"] == list(x.shape)
        np.testing.assert_array_equal(np.array(outputs["x"]["data"]).reshape(x.shape), x)
        calls.update(outputs["call"]["data"])
        assert len(set(outputs["call"]["data"])) == 1  # one request, one call
    assert len(calls) < len(inputs)


def test_a_rejected_request_does_not_fail_its_batch_neighbours(
    counting_server: RunningServer,
) -> None:
    url = f"{counting_server.url}/v2/models/counting/infer"
    bodies = [body(np.full((1, 3), float(i)), poison=-1.0 if i == 5 else 0.0) for i in range(16)]
    responses = asyncio.run(fire(url, bodies))
    for i, response in enumerate(responses):
        if i == 5:
            assert response.status_code == 400
            assert "poison" in response.json()["error"]
        else:
            assert response.status_code == 200, response.text
            x = response.json()["outputs"][0]
            assert x["data"] == [float(i)] * 3


def test_requests_with_different_shapes_are_not_merged(counting_server: RunningServer) -> None:
    url = f"{counting_server.url}/v2/models/counting/infer"
    bodies = [body(np.ones((1, 2 + i % 2))) for i in range(8)]
    responses = asyncio.run(fire(url, bodies))
    assert all(r.status_code == 200 for r in responses)
    for i, response in enumerate(responses):
        assert response.json()["outputs"][0]["shape"] == [1, 2 + i % 2]

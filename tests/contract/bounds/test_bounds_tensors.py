"""Issue 11, #10 and "Also": a BYTES tensor is refused by datatype before it is decoded, large
bodies are decoded off the event loop, BOOL inputs take booleans only, and FP64 values beyond
FP32 are a 400 naming the input, never ``null`` in the output.

Real ``python -m kaip.serving`` processes (tiny-lm, whose input ``x`` is FP32, and the counting
echo model, which takes any tensor); httpx for JSON bodies, tritonclient for binary ones.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from model_server.harness import ROOT, RunningServer, counting_spec, start_server
from tritonclient.utils import InferenceServerException

from bounds.harness import measured, repeat_for


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(
        ROOT / "examples" / "tiny-lm", "tiny-lm", tmp_path_factory.mktemp("tiny-lm")
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("echo")
    env = {"KAIP_TEST_PREDICT_SLEEP": "0"}
    server = start_server(counting_spec(directory / "spec"), "counting", directory, env=env)
    yield server
    server.stop()


def _one_answer(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length (the connection stays open)."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, rest = received.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += sock.recv(65536)
    return head + b"\r\n\r\n" + rest


def _infer(server: RunningServer, model: str, tensor: dict[str, object]) -> httpx.Response:
    body = orjson.dumps({"inputs": [tensor]})
    return httpx.post(f"{server.url}/v2/models/{model}/infer", content=body, timeout=30)


def test_a_bytes_tensor_for_a_numeric_input_is_refused_before_it_is_decoded(
    tiny_lm: RunningServer,
) -> None:
    """The issue's reproduction: 8 MiB of BYTES stalled liveness for 1.4 s before the 400."""
    count = 2 * 1024 * 1024 - 64  # "a", four bytes each: just under maxRequestBytes (8 MiB)
    body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1, count], "datatype": "BYTES", "data": ["a"] * count}]}
    )
    refused_after: list[float] = []

    def attack() -> None:
        started = time.monotonic()
        answer = httpx.post(f"{tiny_lm.url}/v2/models/tiny-lm/infer", content=body, timeout=30)
        refused_after.append(time.monotonic() - started)
        assert answer.status_code == 400
        assert (
            answer.json()["error"] == "input 'x' is BYTES, but model 'tiny-lm' takes FP32 for 'x'"
        )

    with measured(tiny_lm.process.pid, tiny_lm.port) as measurement:
        repeat_for(4.0, attack)
    measurement.check()
    measurement.assert_quick(refused_after)


def test_a_large_binary_bytes_tensor_is_decoded_off_the_event_loop(echo: RunningServer) -> None:
    """Triton's binary BYTES: 256K elements of 16 bytes, each behind its length: 5 MiB."""
    client = triton.InferenceServerClient(f"127.0.0.1:{echo.port}", network_timeout=60)
    texts = np.array([b"0123456789abcdef"] * (256 * 1024), dtype=object)
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(texts, binary_data=True)
    outputs = [triton.InferRequestedOutput("call", binary_data=True)]

    def send() -> None:
        result = client.infer("counting", [tensor], outputs=outputs)
        assert result.as_numpy("call").shape == (len(texts),)

    with measured(echo.process.pid, echo.port) as measurement:
        repeat_for(4.0, send)
    measurement.check()


def test_bool_inputs_take_only_booleans(echo: RunningServer) -> None:
    for data in (["false"], [0, 1], ["true", "false"]):
        answer = _infer(echo, "counting", {"name": "b", "shape": [len(data)], "datatype": "BOOL",
                                           "data": data})  # fmt: skip
        assert answer.status_code == 400, data
        assert answer.json()["error"].startswith("input 'b': BOOL data must be true or false")
    fine = _infer(echo, "counting", {"name": "b", "shape": [2], "datatype": "BOOL",
                                     "data": [True, False]})  # fmt: skip
    assert fine.status_code == 200
    assert fine.json()["outputs"][0]["data"] == [True, False]
    strings = _infer(echo, "counting", {"name": "i", "shape": [1], "datatype": "INT32",
                                        "data": ["7"]})  # fmt: skip
    assert strings.status_code == 400 and "INT32 data must be integers" in strings.text
    wraps = _infer(echo, "counting", {"name": "u", "shape": [1], "datatype": "UINT8",
                                      "data": [300]})  # fmt: skip
    assert wraps.status_code == 400 and "out of the range of UINT8" in wraps.text


def test_fp64_values_beyond_fp32_are_a_400_naming_the_input(tiny_lm: RunningServer) -> None:
    as_fp64 = _infer(tiny_lm, "tiny-lm", {"name": "x", "shape": [1, 2], "datatype": "FP64",
                                          "data": [1.0, 1e300]})  # fmt: skip
    assert as_fp64.status_code == 400, as_fp64.text
    assert as_fp64.json()["error"].startswith(
        "input 'x' (as FP32): values beyond the range of FP32"
    )
    as_fp32 = _infer(tiny_lm, "tiny-lm", {"name": "x", "shape": [1, 2], "datatype": "FP32",
                                          "data": [1.0, 1e300]})  # fmt: skip
    assert as_fp32.status_code == 400 and "beyond the range of FP32" in as_fp32.text
    client = triton.InferenceServerClient(f"127.0.0.1:{tiny_lm.port}")
    tensor = triton.InferInput("x", [1, 2], "FP64")
    tensor.set_data_from_numpy(np.array([[1.0, -1e300]]), binary_data=True)
    with pytest.raises(InferenceServerException, match="beyond the range of FP32"):
        client.infer("tiny-lm", [tensor])
    tensor.set_data_from_numpy(np.array([[1.0, 2.5]]), binary_data=True)
    assert client.infer("tiny-lm", [tensor]).as_numpy("y").tolist() == [3.5]

"""Open Inference Protocol v2 against the real server, driven by Triton's own HTTP client."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from sklearn.datasets import load_digits
from tritonclient.utils import InferenceServerException

from model_server.harness import RunningServer

DIGITS, _ = load_digits(return_X_y=True)


def client(server: RunningServer) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(f"127.0.0.1:{server.port}")


def test_health_and_metadata_through_tritonclient(digits_server: RunningServer) -> None:
    c = client(digits_server)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("digits") and c.is_model_ready("digits", "1")
    assert not c.is_model_ready("nope")
    server = c.get_server_metadata()
    assert server["name"] == "kaip" and "binary_tensor_data" in server["extensions"]
    meta = c.get_model_metadata("digits")
    assert meta["platform"] == "sklearn" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 64]}]
    assert meta["outputs"] == [{"name": "output-0", "datatype": "INT64", "shape": [-1]}]
    assert c.get_model_metadata("digits", "1") == meta


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("dtype", ["FP32", "FP64", "INT64"])
def test_predictions_equal_model_predict(
    digits_server: RunningServer, digits_model: Any, binary: bool, dtype: str
) -> None:
    rows = DIGITS[:50].astype(triton_to_numpy(dtype))
    tensor = triton.InferInput("input-0", list(rows.shape), dtype)
    tensor.set_data_from_numpy(rows, binary_data=binary)
    output = triton.InferRequestedOutput("output-0", binary_data=binary)
    result = client(digits_server).infer("digits", [tensor], outputs=[output], request_id="r1")
    assert result.get_response()["id"] == "r1"
    np.testing.assert_array_equal(result.as_numpy("output-0"), digits_model.predict(rows))


def triton_to_numpy(datatype: str) -> Any:
    from tritonclient.utils import triton_to_np_dtype

    return triton_to_np_dtype(datatype)


def test_no_requested_outputs_means_all_outputs_in_binary(
    digits_server: RunningServer, digits_model: Any
) -> None:
    rows = DIGITS[:3].astype(np.float32)
    tensor = triton.InferInput("input-0", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = client(digits_server).infer("digits", [tensor], model_version="1")
    output = result.get_output("output-0")
    assert output["parameters"]["binary_data_size"] == 3 * 8
    np.testing.assert_array_equal(result.as_numpy("output-0"), digits_model.predict(rows))


DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES"]  # fmt: skip


def sample(datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([[b"kaip", "ü".encode()], [b"", b"x y"]], dtype=object)
    if datatype == "BOOL":
        return np.array([[True, False], [False, True]])
    dtype = triton_to_numpy(datatype)
    info = np.finfo(dtype) if np.dtype(dtype).kind == "f" else np.iinfo(dtype)
    return np.array([[0, 1], [info.max, info.min]], dtype=dtype)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_round_trips(
    counting_server: RunningServer, datatype: str, binary: bool
) -> None:
    data = sample(datatype)
    if datatype == "UINT64" and not binary:
        data = data.astype(np.uint64)
    tensor = triton.InferInput("value", list(data.shape), datatype)
    tensor.set_data_from_numpy(data, binary_data=binary)
    outputs = [triton.InferRequestedOutput("value", binary_data=binary)]
    result = client(counting_server).infer("counting", [tensor], outputs=outputs)
    got = result.as_numpy("value")
    assert result.get_output("value")["datatype"] == datatype
    if datatype == "BYTES":
        as_bytes = [v.encode() if isinstance(v, str) else bytes(v) for v in got.ravel()]
        assert as_bytes == list(data.ravel())
    else:
        np.testing.assert_array_equal(got, data)


def post(server: RunningServer, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}{path}", content=content, **kwargs)


def infer_body(data: Any, shape: list[int], datatype: str = "FP32", **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}],
            **extra}  # fmt: skip


def test_nested_data_equals_flat_data(digits_server: RunningServer, digits_model: Any) -> None:
    rows = DIGITS[:2]
    flat = post(
        digits_server, "/v2/models/digits/infer", infer_body(rows.ravel().tolist(), [2, 64])
    )
    nested = post(digits_server, "/v2/models/digits/infer", infer_body(rows.tolist(), [2, 64]))
    assert flat.status_code == nested.status_code == 200
    assert flat.json()["outputs"] == nested.json()["outputs"]
    assert (
        flat.json()["outputs"][0]["data"] == digits_model.predict(rows.astype(np.float32)).tolist()
    )


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        (
            "/v2/models/nope/infer",
            infer_body([0] * 64, [1, 64]),
            404,
            "Request for unknown model: 'nope' is not found; this server serves 'digits'",
        ),
        ("/v2/models/digits/versions/9/infer", infer_body([0] * 64, [1, 64]), 404, "version"),
        ("/v2/models/digits/infer", b"{not json", 400, "not valid JSON"),
        ("/v2/models/digits/infer", {"inputs": []}, 400, "non-empty 'inputs'"),
        ("/v2/models/digits/infer", infer_body([0] * 63, [1, 64]), 400, "needs 64 elements"),
        ("/v2/models/digits/infer", infer_body([0] * 63, [1, 63]), 400, "takes [-1, 64]"),
        ("/v2/models/digits/infer", infer_body(["a"] * 64, [1, 64]), 400, "FP32 data must be"),
        ("/v2/models/digits/infer", infer_body([0] * 64, [1, 64], "BYTES"), 400, "is BYTES, but"),
        ("/v2/models/digits/infer", infer_body([0] * 64, [1, 64], "FP8"), 400, "not one of"),
        ("/v2/models/digits/infer", infer_body([0] * 64, [1, 64], outputs=[{"name": "p"}]),
         400, "no output 'p'"),
        ("/v2/models/digits/infer", infer_body([[0] * 64, [0]], [2, 64]), 400, "FP32"),
    ],
)  # fmt: skip
def test_client_mistakes_get_a_4xx_and_a_reason(
    digits_server: RunningServer, path: str, body: Any, status: int, words: str
) -> None:
    response = post(digits_server, path, body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_wrong_method_and_unknown_routes(digits_server: RunningServer) -> None:
    assert httpx.get(f"{digits_server.url}/v2/models/digits/infer").status_code == 405
    missing = httpx.get(f"{digits_server.url}/v2/nothing")
    assert missing.status_code == 404 and "error" in missing.json()
    assert httpx.get(f"{digits_server.url}/v1/models").status_code == 404  # openai is off


def test_binary_body_errors_are_400(digits_server: RunningServer) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 64],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 256},
                }
            ]
        }
    ).encode()
    short = post(
        digits_server,
        "/v2/models/digits/infer",
        header + b"\0" * 100,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert short.status_code == 400 and "overruns" in short.json()["error"]
    extra = post(
        digits_server,
        "/v2/models/digits/infer",
        header + b"\0" * 300,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert extra.status_code == 400 and "no input claims" in extra.json()["error"]


def test_gzip_request_body(digits_server: RunningServer, digits_model: Any) -> None:
    import gzip

    body = gzip.compress(json.dumps(infer_body(DIGITS[0].tolist(), [1, 64])).encode())
    response = post(
        digits_server, "/v2/models/digits/infer", body, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == digits_model.predict(DIGITS[:1]).tolist()


def test_tritonclient_raises_on_a_client_mistake(digits_server: RunningServer) -> None:
    tensor = triton.InferInput("input-0", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="takes"):
        client(digits_server).infer("digits", [tensor])

"""The OIP v2 wire format: every datatype, flat and nested data, binary tensors, mistakes."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from kaip.errors import InferenceError
from kaip.serving.codec import DTYPES, check_datatypes, decode_request, encode_response, fit


def request(tensors: list[dict[str, object]], **extra: object) -> bytes:
    return json.dumps({"inputs": tensors, **extra}).encode()


@pytest.mark.parametrize("datatype", [d for d in DTYPES if d != "BYTES"])
def test_json_numbers_of_every_datatype(datatype: str) -> None:
    data = [[1, 0], [1, 1]] if datatype != "BOOL" else [[True, False], [True, True]]
    decoded = decode_request(
        request([{"name": "a", "shape": [2, 2], "datatype": datatype, "data": data}])
    )
    array = decoded.inputs["a"]
    assert array.dtype == DTYPES[datatype] and array.shape == (2, 2)
    assert array.tolist() == np.array(data, dtype=DTYPES[datatype]).tolist()


def test_flat_and_nested_data_decode_alike() -> None:
    flat = decode_request(request([{"name": "a", "shape": [2, 3], "datatype": "FP32",
                                    "data": [1, 2, 3, 4, 5, 6]}]))  # fmt: skip
    nested = decode_request(request([{"name": "a", "shape": [2, 3], "datatype": "FP32",
                                      "data": [[1, 2, 3], [4, 5, 6]]}]))  # fmt: skip
    np.testing.assert_array_equal(flat.inputs["a"], nested.inputs["a"])


def test_binary_tensors_and_bytes() -> None:
    floats = np.arange(6, dtype=np.float32).reshape(2, 3)
    strings = [b"ab", b"", "ü".encode()]
    blob = b"".join(struct.pack("<I", len(s)) + s for s in strings)
    header = json.dumps({
        "inputs": [
            {"name": "f", "shape": [2, 3], "datatype": "FP32",
             "parameters": {"binary_data_size": floats.nbytes}},
            {"name": "s", "shape": [3], "datatype": "BYTES",
             "parameters": {"binary_data_size": len(blob)}},
        ],
        "outputs": [{"name": "f", "parameters": {"binary_data": True}}],
    }).encode()  # fmt: skip
    decoded = decode_request(header + floats.tobytes() + blob, len(header))
    np.testing.assert_array_equal(decoded.inputs["f"], floats)
    assert decoded.inputs["s"].tolist() == strings
    assert decoded.outputs is not None and decoded.outputs[0].binary


def test_encode_json_and_binary_outputs() -> None:
    labels = np.array([3, 1], dtype=np.int64)
    texts = np.array([b"x", b"yz"], dtype=object)
    body, header_length = encode_response("m", "1", "id-1", [("l", labels, False)])
    assert header_length is None
    doc = json.loads(body)
    assert doc["id"] == "id-1" and doc["outputs"][0] == {
        "name": "l", "datatype": "INT64", "shape": [2], "data": [3, 1]
    }  # fmt: skip
    body, header_length = encode_response("m", "1", None, [("l", labels, True), ("t", texts, True)])
    assert header_length is not None
    doc = json.loads(body[:header_length])
    binary = body[header_length:]
    assert doc["outputs"][0]["parameters"]["binary_data_size"] == 16
    assert np.frombuffer(binary[:16], np.int64).tolist() == [3, 1]
    assert binary[16:] == struct.pack("<I", 1) + b"x" + struct.pack("<I", 2) + b"yz"


def test_fp16_and_bool_outputs_serialise_to_json() -> None:
    body, _ = encode_response(
        "m", "1", None,
        [("h", np.array([0.5, 2.0], np.float16), False), ("b", np.array([True]), False)],
    )  # fmt: skip
    outputs = json.loads(body)["outputs"]
    assert outputs[0]["data"] == [0.5, 2.0] and outputs[1]["data"] == [True]


@pytest.mark.parametrize(
    ("tensor", "words"),
    [
        ({"name": "a", "shape": [2], "datatype": "FP32", "data": [1]}, "needs 2 elements"),
        ({"name": "a", "shape": [-1], "datatype": "FP32", "data": [1]}, "non-negative"),
        ({"name": "a", "shape": [1], "datatype": "UINT8", "data": [300]}, "out of the range"),
        ({"name": "a", "shape": [1], "datatype": "INT64", "data": [2**63]}, "out of the range"),
        ({"name": "a", "shape": [2], "datatype": "UINT64", "data": [-1, 2**63]}, "out of the"),
        ({"name": "a", "shape": [2], "datatype": "INT64", "data": [1, 2**64]}, "integers, got 1.8"),
        ({"name": "a", "shape": [2], "datatype": "INT8", "data": [1, 2**70]}, "integers, got 1.18"),
        ({"name": "a", "shape": [1], "datatype": "BOOL", "data": ["false"]}, "false, got 'false'"),
        ({"name": "a", "shape": [2], "datatype": "BOOL", "data": [True, 1]}, "false, got 1"),
        ({"name": "a", "shape": [1], "datatype": "INT32", "data": [1, 1.5]}, "integers, got 1.5"),
        ({"name": "a", "shape": [1], "datatype": "FP32", "data": [1, "1"]}, "numbers, got '1'"),
        ({"name": "a", "shape": [1], "datatype": "FP32", "data": [1e300]}, "beyond the range"),
        ({"name": "a", "shape": [1], "datatype": "FP16", "data": [70000]}, "beyond the range"),
        ({"name": "a", "shape": [2], "datatype": "INT8", "data": [[1], 2]}, "does not fit"),
        ({"name": "a", "shape": [1], "datatype": "BYTES", "data": [1]}, "strings"),
        ({"name": "a", "shape": [1], "datatype": "fp32", "data": [1]}, "not one of"),
        ({"name": "a", "shape": [1], "datatype": "FP32"}, "no data"),
        ({"shape": [1], "datatype": "FP32", "data": [1]}, "'name'"),
        ({"name": "a", "shape": [1], "datatype": "FP32",
          "parameters": {"binary_data_size": 4}}, "overruns"),
    ],
)  # fmt: skip
def test_mistakes_raise_inference_errors(tensor: dict[str, object], words: str) -> None:
    with pytest.raises(InferenceError, match=words):
        decode_request(request([tensor]))


def test_header_length_past_the_body_is_a_mistake() -> None:
    with pytest.raises(InferenceError, match="Inference-Header-Content-Length"):
        decode_request(b"{}", 10)


def test_fit_refuses_what_the_target_cannot_hold_and_keeps_what_it_can() -> None:
    assert fit(np.array([1, 2]), np.dtype("float32"), "x").tolist() == [1.0, 2.0]
    assert fit(np.array([np.inf, 1.0]), np.dtype("float32"), "x").tolist() == [np.inf, 1.0]
    with pytest.raises(InferenceError, match=r"^x: values beyond the range of FP32"):
        fit(np.array([1.0, -1e300]), np.dtype("float32"), "x")
    with pytest.raises(InferenceError, match=r"out of the range of INT8 \[-128, 127\]"):
        fit(np.array([1, -129]), np.dtype("int8"), "x")


def test_a_large_body_has_its_datatypes_checked_without_its_data_decoded() -> None:
    seen: list[tuple[str, str, int]] = []

    def refuse_bytes(name: str, datatype: str, inputs_sent: int) -> None:
        seen.append((name, datatype, inputs_sent))
        if datatype == "BYTES":
            raise InferenceError(f"input {name!r} is BYTES")

    strings = {"name": "b", "shape": [40000], "datatype": "BYTES", "data": ["ab"] * 40000}
    big = request([{"name": "a", "shape": [2], "datatype": "FP32", "data": [1, 2]}, strings])
    with pytest.raises(InferenceError, match="input 'b' is BYTES"):
        check_datatypes(big, None, refuse_bytes)
    assert seen == [("a", "FP32", 2), ("b", "BYTES", 2)]
    with pytest.raises(InferenceError, match="input 'b' is BYTES"):
        decode_request(big, None, refuse_bytes)  # the same check, inline, as it decodes
    seen.clear()
    small = request([{"name": "a", "shape": [1], "datatype": "BYTES", "data": ["x"]}])
    check_datatypes(small, None, refuse_bytes)
    assert seen == []  # a small body is left to decode_request
    check_datatypes(b"[" * 70000, None, refuse_bytes)  # unreadable: decode_request says why
    assert seen == []

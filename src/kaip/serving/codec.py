"""Open Inference Protocol v2 tensors: JSON and binary bodies to numpy arrays, and back.

Owns the wire format of ``POST .../infer``: every datatype (BOOL, UINT8..64, INT8..64, FP16,
FP32, FP64, BYTES), flat or nested ``data``, requested outputs, parameters and Triton's binary
tensor extension (``binary_data_size``, ``binary_data``, ``binary_data_output`` and the
``Inference-Header-Content-Length`` header). Every malformed request raises
:class:`~kaip.errors.InferenceError` (HTTP 400) naming the tensor and the fix: BOOL data must be
JSON booleans, integer data integers that fit the datatype, floating-point data numbers that fit
it (``1e300`` as FP32 is refused, never sent on as infinity). A caller that knows the model's
inputs passes a ``check``, which sees each tensor's name and datatype before its data is
converted, so a tensor of the wrong datatype costs no decoding. Pure: no I/O.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import orjson

from kaip.errors import InferenceError
from kaip.protocol.extensions import refused_parameter
from kaip.serving.runtimes.base import Array

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
_DATATYPE_OF: dict[np.dtype[Any], str] = {v: k for k, v in DTYPES.items()}
_NUMPY_OPTION = orjson.OPT_SERIALIZE_NUMPY
_U32 = struct.Struct("<I")
# The numpy kinds JSON data of each kind of datatype may arrive as: b bool, i/u integer, f float.
_JSON_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}
_KIND_WORDS = {"b": "true or false", "i": "integers", "u": "integers", "f": "numbers"}

DatatypeCheck = Callable[[str, str, int], None]
"""``check(name, datatype, inputs_sent)`` raises InferenceError when the model does not take
``datatype`` for input ``name`` (``inputs_sent``: how many inputs the request has)."""
PRECHECK_BYTES = 64 * 1024  # larger JSON has its datatypes checked before it is decoded at all


class _TensorHead(msgspec.Struct):
    name: object = None
    datatype: object = None
    data: msgspec.Raw = msgspec.Raw(b"")  # skipped over, never decoded


class _RequestHead(msgspec.Struct):
    inputs: list[_TensorHead] = []


_HEAD_DECODER = msgspec.json.Decoder(_RequestHead)


def check_datatypes(body: bytes, header_length: int | None, check: DatatypeCheck) -> None:
    """``check`` each tensor's datatype while only skipping over its data (a few ms for 8 MiB,
    where decoding 2 million strings takes a second and a few hundred MiB). A body this cannot
    read is left to :func:`decode_request`, which says what is wrong with it."""
    header = body if header_length is None else body[:header_length]
    if len(header) <= PRECHECK_BYTES:
        return  # decode_request checks as it goes; skipping first would cost more than it saves
    try:
        head = _HEAD_DECODER.decode(header)
    except msgspec.DecodeError:
        return
    for tensor in head.inputs:
        if isinstance(tensor.name, str) and tensor.datatype in DTYPES:
            check(tensor.name, str(tensor.datatype), len(head.inputs))


def datatype_of(array: Array) -> str:
    """The OIP datatype of a numpy array (strings and bytes are BYTES)."""
    found = _DATATYPE_OF.get(array.dtype)
    if found is not None:
        return found
    if array.dtype.kind in "SUO":
        return "BYTES"
    raise InferenceError(f"the model returned an array of dtype {array.dtype}, which OIP v2 lacks")


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(slots=True)
class InferRequest:
    """One decoded infer request: named arrays plus what the client wants back."""

    id: str | None
    inputs: dict[str, Array]
    datatypes: dict[str, str]
    outputs: list[RequestedOutput] | None
    binary_output: bool
    parameters: dict[str, Any]


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw
    ):
        raise InferenceError(
            f"input {name!r}: shape must be a list of non-negative integers, got {raw!r}"
        )
    return tuple(raw)


def _flatten_strings(data: Any, name: str) -> list[bytes]:
    out: list[bytes] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str):
            out.append(item.encode())
        else:
            raise InferenceError(f"input {name!r}: BYTES data must hold strings, got {item!r}")
    return out


def fit(raw: Array, target: np.dtype[Any], where: str) -> Array:
    """``raw`` as ``target``, refusing values the target cannot hold (no wrap, no infinity)."""
    if raw.dtype == target:
        return raw
    if target.kind in "iu" and raw.dtype.kind in "iu" and raw.size:
        info = np.iinfo(target)
        if raw.min() < info.min or raw.max() > info.max:
            raise InferenceError(
                f"{where}: values out of the range of {_DATATYPE_OF[target]} "
                f"[{info.min}, {info.max}]"
            )
    with np.errstate(over="ignore", invalid="ignore"):
        array = raw.astype(target)
    overflowed = target.kind == "f" and np.isinf(array).any()
    if overflowed and (np.isinf(array) & ~np.isinf(raw)).any():  # a finite value became inf
        largest = float(np.finfo(target).max)
        raise InferenceError(
            f"{where}: values beyond the range of {_DATATYPE_OF[target]} (+/-{largest:.4g}); "
            "scale them or send a wider datatype"
        )
    return array


def _misfit(data: list[Any], target: np.dtype[Any]) -> Any:
    """The first value of ``data`` (JSON numpy could not type as ``target``'s kind) that JSON
    data of that kind cannot hold: a string, a fraction for an integer, an integer past 64 bits.
    Only called to word an error."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(reversed(value))
            continue
        if isinstance(value, bool):
            kind = "b"
        elif isinstance(value, int):
            kind = "i" if -(2**63) <= value < 2**64 else "?"
        elif isinstance(value, float):
            kind = "f"
        else:
            kind = "?"
        if kind not in _JSON_KINDS[target.kind]:
            return value
    return None  # every value fits the kind: numpy typed large integers float64


def _from_json_data(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> Array:
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        items = _flatten_strings(data, name)
        array = np.empty(len(items), dtype=object)
        array[:] = items
    else:
        target = DTYPES[datatype]
        try:
            raw = np.array(data)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InferenceError(
                f"input {name!r}: data does not fit datatype {datatype} ({exc}); send a flat "
                "or evenly nested list of numbers"
            ) from None
        if raw.size and raw.dtype.kind not in _JSON_KINDS[target.kind]:
            misfit = _misfit(data, target)
            if misfit is not None:
                raise InferenceError(
                    f"input {name!r}: {datatype} data must be {_KIND_WORDS[target.kind]}, got "
                    f"{misfit!r}"
                )
            # integers only, but numpy typed them float64 (ints past 2**63 beside smaller ones)
            try:
                raw = np.array(data, dtype=target)
            except OverflowError:
                info = np.iinfo(target)
                raise InferenceError(
                    f"input {name!r}: values out of the range of {datatype} "
                    f"[{info.min}, {info.max}]"
                ) from None
        array = fit(raw, target, f"input {name!r}")
    if array.size != math.prod(shape):
        raise InferenceError(
            f"input {name!r}: shape {list(shape)} needs {math.prod(shape)} elements, "
            f"data has {array.size}"
        )
    return array.reshape(shape)


def _from_binary(raw: bytes, datatype: str, shape: tuple[int, ...], name: str) -> Array:
    count = math.prod(shape)
    if datatype == "BYTES":
        items: list[bytes] = []
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise InferenceError(f"input {name!r}: truncated BYTES element length")
            (length,) = _U32.unpack_from(raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise InferenceError(f"input {name!r}: BYTES element overruns its binary data")
            items.append(raw[offset : offset + length])
            offset += length
        if len(items) != count:
            raise InferenceError(
                f"input {name!r}: shape {list(shape)} needs {count} elements, binary data "
                f"has {len(items)}"
            )
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise InferenceError(
            f"input {name!r}: shape {list(shape)} of {datatype} needs "
            f"{count * dtype.itemsize} bytes, binary_data_size is {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _parameters(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InferenceError(f"{where}: parameters must be an object, got {raw!r}")
    return raw


def decode_request(
    body: bytes, header_length: int | None = None, check: DatatypeCheck | None = None
) -> InferRequest:
    """Decode an infer request body; ``header_length`` splits JSON from binary tensors, and
    ``check`` vets each tensor's datatype before its data is converted (call
    :func:`check_datatypes` first for a large body: that one skips the data unparsed)."""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise InferenceError(
                f"Inference-Header-Content-Length is {header_length} but the body has "
                f"{len(body)} bytes"
            )
        header, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        header, binary = body, memoryview(b"")
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise InferenceError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InferenceError("the request body must be a JSON object with an 'inputs' list")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InferenceError("the request needs a non-empty 'inputs' list of tensors")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InferenceError(f"'id' must be a string, got {request_id!r}")
    inputs: dict[str, Array] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for index, tensor in enumerate(raw_inputs):
        if not isinstance(tensor, dict):
            raise InferenceError(f"inputs[{index}] must be an object {{name, shape, datatype}}")
        name = tensor.get("name")
        if not isinstance(name, str) or not name:
            raise InferenceError(f"inputs[{index}] needs a 'name' string")
        if name in inputs:
            raise InferenceError(f"input {name!r} appears twice")
        datatype = tensor.get("datatype")
        if datatype not in DTYPES:
            raise InferenceError(
                f"input {name!r}: datatype {datatype!r} is not one of {', '.join(DTYPES)}"
            )
        if check is not None:
            check(name, datatype, len(raw_inputs))
        shape = _shape(tensor.get("shape"), name)
        params = _parameters(tensor.get("parameters"), f"input {name!r}")
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InferenceError(f"input {name!r}: binary_data_size must be an integer >= 0")
            if "data" in tensor:
                raise InferenceError(f"input {name!r}: send either data or binary_data_size")
            if offset + size > len(binary):
                raise InferenceError(
                    f"input {name!r}: binary_data_size {size} overruns the body's binary part "
                    f"({len(binary) - offset} bytes left)"
                )
            raw = bytes(binary[offset : offset + size])
            offset += size
            inputs[name] = _from_binary(raw, datatype, shape, name)
        elif "data" in tensor:
            inputs[name] = _from_json_data(tensor["data"], datatype, shape, name)
        else:
            raise InferenceError(f"input {name!r} has no data (nor binary_data_size)")
        datatypes[name] = datatype
    if offset != len(binary):
        raise InferenceError(
            f"the body has {len(binary) - offset} bytes of binary data that no input claims"
        )
    params = _parameters(doc.get("parameters"), "request")
    refused = refused_parameter(params)
    if refused is not None:
        raise InferenceError(refused)
    outputs = _requested_outputs(doc.get("outputs"))
    binary_output = params.get("binary_data_output") is True
    return InferRequest(request_id, inputs, datatypes, outputs, binary_output, params)


def _requested_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InferenceError("'outputs' must be a list of {name, parameters}")
    out: list[RequestedOutput] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InferenceError(f"outputs[{index}] must be an object with a 'name' string")
        params = _parameters(item.get("parameters"), f"output {item['name']!r}")
        if params.get("classification") not in (None, 0):
            raise InferenceError(
                f"output {item['name']!r}: the classification parameter belongs to Triton's "
                "classification extension, which kaip does not implement; return class labels "
                "from the model itself"
            )
        out.append(RequestedOutput(item["name"], params.get("binary_data") is True))
    return out


def _json_data(array: Array) -> Any:
    if array.dtype.kind in "SUO":
        return [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.flat
        ]
    return np.ascontiguousarray(array).reshape(-1)


def _binary_data(array: Array) -> bytes:
    if array.dtype.kind in "SUO":
        parts: list[bytes] = []
        for v in array.flat:
            item = v if isinstance(v, bytes) else str(v).encode()
            parts.append(_U32.pack(len(item)))
            parts.append(item)
        return b"".join(parts)
    return np.ascontiguousarray(array).tobytes()


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[tuple[str, Array, bool]],
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Encode ``(name, array, as_binary)`` outputs; returns the body and the JSON header length
    (``None`` when the body is JSON only)."""
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array, binary in outputs:
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of(array),
            "shape": list(array.shape),
        }
        if binary:
            blob = _binary_data(array)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = _json_data(array)
        tensors.append(tensor)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = parameters
    doc["outputs"] = tensors
    header = orjson.dumps(doc, option=_NUMPY_OPTION)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)

"""The ONNX Runtime runtime: one ``InferenceSession`` on the CPU provider (or CUDA when present).

Only tensor inputs and outputs are served (a sequence-of-maps output, such as skl2onnx's
``ZipMap``, is left out of the metadata and the response).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaip.errors import ArtifactError
from kaip.serving.runtimes.base import Array, TensorSpec
from kaip.spec import Artifact

_ONNX_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _spec(node: Any) -> TensorSpec | None:
    datatype = _ONNX_TYPES.get(node.type)
    if datatype is None:
        return None
    shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
    return TensorSpec(node.name, datatype, shape)


class OnnxRuntime:
    platform = "onnxruntime"
    batchable = True

    def __init__(self, path: Path, artifact: Artifact) -> None:
        self.path = path
        self.session: Any = None
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()

    def load(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - part of the onnx extra
            raise ArtifactError("format onnx needs onnxruntime: pip install 'kaip[onnx]'") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=ort.get_available_providers()
            )
        except Exception as exc:
            raise ArtifactError(f"cannot load {self.path} with ONNX Runtime: {exc}") from exc
        inputs = [_spec(n) for n in self.session.get_inputs()]
        if any(s is None for s in inputs):
            raise ArtifactError(f"{self.path} has an input that is not a tensor")
        self._inputs = tuple(s for s in inputs if s is not None)
        self._outputs = tuple(s for s in map(_spec, self.session.get_outputs()) if s is not None)
        self.batchable = all(s.shape and s.shape[0] == -1 for s in self._inputs + self._outputs)

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return self._outputs

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        feed = {k: (v.astype(str) if v.dtype == object else v) for k, v in inputs.items()}
        names = [s.name for s in self._outputs]
        results = self.session.run(names, feed)
        return {name: np.asarray(value) for name, value in zip(names, results, strict=True)}

    def probe(self) -> dict[str, Array] | None:
        from kaip.serving.codec import DTYPES

        probe: dict[str, Array] = {}
        for spec in self._inputs:
            if spec.datatype == "BYTES" or any(d == -1 for d in spec.shape[1:]):
                return None
            probe[spec.name] = np.zeros((1, *spec.shape[1:]), dtype=DTYPES[spec.datatype])
        return probe

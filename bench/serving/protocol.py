"""What each server is asked and how its answer is read: request path, body and predictions.

Pure: plain data in, plain data out. The load generator posts exactly the bytes made here, so the
correctness check and the load test send the same requests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MODEL_NAME = "digits"


@dataclass(frozen=True)
class Protocol:
    name: str
    path: str

    def body(self, rows: Sequence[Sequence[float]]) -> bytes:
        matrix = [[float(v) for v in row] for row in rows]
        if self.name == "oip":
            payload: Any = {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [len(matrix), len(matrix[0])],
                        "datatype": "FP32",
                        "data": [v for row in matrix for v in row],
                    }
                ]
            }
        elif self.name == "bentoml":
            payload = {"x": matrix}
        elif self.name == "ray":
            payload = {"instances": matrix}
        else:
            raise ValueError(f"unknown protocol {self.name!r}")
        return json.dumps(payload, separators=(",", ":")).encode()

    def predictions(self, response: bytes) -> list[int]:
        payload = json.loads(response)
        if self.name == "oip":
            data = payload["outputs"][0]["data"]
        elif self.name == "bentoml":
            data = payload
        elif self.name == "ray":
            data = payload["predictions"]
        else:
            raise ValueError(f"unknown protocol {self.name!r}")
        return [int(v) for v in _flatten(data)]


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [v for item in data for v in _flatten(item)]
    return [data]


OIP = Protocol("oip", f"/v2/models/{MODEL_NAME}/infer")
BENTOML = Protocol("bentoml", "/predict")
RAY = Protocol("ray", "/")

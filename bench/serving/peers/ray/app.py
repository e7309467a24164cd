"""Ray Serve peer: one deployment, one replica, a plain Starlette request in, JSON out.

Body: {"instances": [[64 floats], ...]}; answer: {"predictions": [int, ...]}.
"""

from __future__ import annotations

from typing import Any

import joblib
import numpy as np
from ray import serve
from starlette.requests import Request


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 1})
class Digits:
    def __init__(self, model_path: str) -> None:
        self.model = joblib.load(model_path)

    async def __call__(self, request: Request) -> dict[str, Any]:
        payload = await request.json()
        rows = np.asarray(payload["instances"], dtype=np.float32)
        return {"predictions": self.model.predict(rows).tolist()}


def build(args: dict[str, str]) -> Any:
    return Digits.bind(args["model_path"])

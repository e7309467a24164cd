"""BentoML peer: a @bentoml.service with one worker and a sync API taking an np.ndarray.

Body: {"x": [[64 floats], ...]}; answer: a JSON list of class ids. The per-request access log is
off, as it is for every server in the benchmark; everything else is BentoML's default.
The model path comes from BENCH_MODEL.
"""

from __future__ import annotations

import os

import bentoml
import joblib
import numpy as np


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class Digits:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL"])

    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x.astype(np.float32, copy=False))

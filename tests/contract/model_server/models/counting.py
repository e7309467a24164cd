"""A test model that echoes its inputs and numbers its predict calls.

Each output row carries ``call``, the number of the predict call that produced it, so a test can
count how many calls N requests took. A row with a negative value in ``poison`` makes the whole
call raise ``ValueError``, as a model rejecting bad data would. ``KAIP_TEST_PREDICT_SLEEP``
(seconds, default 0.02) makes each call slow enough for concurrent requests to pile up.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import numpy as np


class Counting:
    def __init__(self, artifact_path: str) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        self.sleep = float(os.environ.get("KAIP_TEST_PREDICT_SLEEP", "0.02"))

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.lock:
            self.calls += 1
            call = self.calls
        time.sleep(self.sleep)
        poison = inputs.get("poison")
        if poison is not None and (poison < 0).any():
            raise ValueError("poison: negative values are refused")
        rows = next(iter(inputs.values())).shape[0]
        out = dict(inputs)
        out["call"] = np.full(rows, call, dtype=np.int64)
        return out

    def generate(self, prompt: str, **params: object) -> Iterator[str]:
        """One ``tick`` per sleep, forever: for timeouts of the OpenAI routes."""
        while True:
            time.sleep(self.sleep)
            yield "tick "

"""Test models that generate without end, and say how many of their generations are running.

``Endless.generate`` yields one piece every ``KAIP_TEST_PIECE_SLEEP`` seconds (default 0.005)
for as long as it is iterated; a prompt that is a number N makes each piece N characters long
(default 1). ``Stuck.generate`` never yields at all: it blocks inside the runtime, as a wedged
model would. ``predict`` (OIP v2, any input) answers ``running``: the generations of this
process that have started and not yet ended, so a test can watch cancellation from outside.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import numpy as np

_lock = threading.Lock()
_running = 0


def _enter() -> None:
    global _running
    with _lock:
        _running += 1


def _leave() -> None:
    global _running
    with _lock:
        _running -= 1


class Endless:
    outputs = ({"name": "running", "datatype": "INT64", "shape": [-1]},)

    def __init__(self, artifact_path: str) -> None:
        self.sleep = float(os.environ.get("KAIP_TEST_PIECE_SLEEP", "0.005"))

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = next(iter(inputs.values())).shape[0]
        return {"running": np.full(rows, _running, dtype=np.int64)}

    def generate(self, prompt: str, **params: object) -> Iterator[str]:
        size = int(prompt) if prompt.strip().isdigit() else 1
        piece = "x" * size
        _enter()
        try:
            while True:
                if self.sleep:
                    time.sleep(self.sleep)
                yield piece
        finally:
            _leave()

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 4), dtype=np.float32)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return messages[-1]["content"]


class Stuck(Endless):
    def generate(self, prompt: str, **params: object) -> Iterator[str]:
        _enter()
        try:
            threading.Event().wait()  # never set: stuck inside the runtime
            yield "never"
        finally:
            _leave()

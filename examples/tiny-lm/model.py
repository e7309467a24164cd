"""A tiny text model with the kaip Python-class contract: generate, embed and predict.

It needs no weights and no torch, so the OpenAI routes can be tried (and tested) anywhere:
``generate`` answers with the prompt's last line reversed word by word, one word per token;
``embed`` hashes words into an 8-dimensional unit vector; ``predict`` (OIP v2) scores rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np

DIM = 8


class TinyLM:
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1]}]

    def __init__(self, artifact_path: str) -> None:
        self.artifact_path = artifact_path

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"].sum(axis=1).astype(np.float32)}

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float,
        top_p: float,
        stop: list[str],
        seed: int | None,
    ) -> Iterator[str]:
        last = prompt.strip().splitlines()[-1] if prompt.strip() else ""
        if last.endswith("assistant:"):
            lines = prompt.strip().splitlines()
            last = lines[-2] if len(lines) > 1 else ""
        words = last.split(":", 1)[-1].split()[::-1] or ["..."]
        for index, word in enumerate(words[:max_tokens]):
            yield word if index == 0 else " " + word

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                digest = hashlib.sha256(word.encode()).digest()
                out[row, digest[0] % DIM] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out

    def count_tokens(self, text: str) -> int:
        return len(text.split())

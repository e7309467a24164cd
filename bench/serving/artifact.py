"""The one model every server in the serving benchmark loads, and the inputs it is asked about.

Owns: fitting the digits pipeline (seeded), saving it with joblib, its sha256, the request rows
(1 and 32 rows of 64 FP32 features) and the fixed rows used for the correctness check, and the
pipeline folded into plain arithmetic (for the compute floor and the "limit" reference server).
Never starts a server or sends a request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEED = 0
FEATURES = 64
CHECK_ROWS = 64  # rows compared against model.predict before any load is applied


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float32), data.target


def fit() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = digits()
    x_train, _, y_train, _ = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    model = Pipeline(
        [
            ("scaler", StandardScaler()),
            ("clf", LogisticRegression(max_iter=2000, random_state=SEED)),
        ]
    )
    return model.fit(x_train, y_train)


def build(directory: Path) -> Artifact:
    """Fits and saves the model as directory/model.joblib unless it is already there."""
    import joblib

    path = directory / "model.joblib"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        joblib.dump(fit(), tmp)
        tmp.replace(path)
    return Artifact(path=path, sha256=sha256_of(path))


def request_rows(rows: int) -> np.ndarray:
    """The rows sent in every load request: the first `rows` digits of a seeded shuffle."""
    x, _ = digits()
    order = np.random.default_rng(SEED).permutation(len(x))
    return x[order[:rows]]


def check_rows() -> np.ndarray:
    """Rows for the correctness check, different from the load rows."""
    x, _ = digits()
    order = np.random.default_rng(SEED + 1).permutation(len(x))
    return x[order[:CHECK_ROWS]]


@dataclass(frozen=True)
class Folded:
    """The pipeline as one affine map: argmax(x @ weights + bias) picks the class index."""

    weights: np.ndarray  # (features, classes)
    bias: np.ndarray  # (classes,)
    classes: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        scores = x.astype(np.float64) @ self.weights + self.bias
        return self.classes[scores.argmax(axis=1)]


def fold(model: Any) -> Folded:
    scaler, clf = model.named_steps["scaler"], model.named_steps["clf"]
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    weights = (clf.coef_ / scale).T
    bias = clf.intercept_ - (clf.coef_ * (scaler.mean_ / scale)).sum(axis=1)
    return Folded(weights=weights, bias=bias, classes=clf.classes_)

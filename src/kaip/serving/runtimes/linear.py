"""Compile recognised scikit-learn linear pipelines to the numpy arithmetic they perform.

``Pipeline(StandardScaler, LogisticRegression).predict`` spends ~98% of its time validating its
input; the arithmetic is a subtraction, a division and one matrix product. :func:`compile_linear`
recognises pipelines of ``StandardScaler`` steps ending in a linear classifier or regressor
that scores with scikit-learn's own decision function and returns the same operations in the
same dtypes: float32 input stays float32 through the scaler (the scaler casts ``mean_`` and
``scale_`` to the input dtype first), integers become float64, then ``X @ coef_.T +
intercept_`` and ``argmax`` (or ``> 0`` for two classes) into ``classes_``.

Callers must still :func:`verify` the result against ``model.predict`` on probe inputs and keep
``predict`` for any dtype where they differ. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kaip.serving.runtimes.base import Array

Compiled = Callable[[Array], Array]
_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


def _scaler_step(step: Any) -> tuple[Array | None, Array | None] | None:
    from sklearn.preprocessing import StandardScaler

    if type(step) is not StandardScaler:
        return None
    mean = step.mean_ if step.with_mean else None
    scale = step.scale_ if step.with_std else None
    return mean, scale


def _linear_kind(estimator: Any) -> str | None:
    """``classifier`` or ``regressor`` for linear models that score with scikit-learn's own
    decision function; subclasses may still wrap ``predict`` (many do, for docstrings or
    multi-label cases), which is why callers verify the compiled path."""
    from sklearn.linear_model._base import LinearClassifierMixin, LinearModel

    cls = type(estimator)
    if not hasattr(estimator, "coef_"):
        return None
    if (
        isinstance(estimator, LinearClassifierMixin)
        and cls.decision_function is LinearClassifierMixin.decision_function
        and hasattr(estimator, "classes_")
    ):
        return "classifier"
    if isinstance(estimator, LinearModel) and (
        cls._decision_function is LinearModel._decision_function
    ):
        return "regressor"
    return None


def compile_linear(model: Any) -> Compiled | None:
    """The numpy equivalent of ``model.predict`` for a recognised model, else ``None``."""
    steps = [s for _, s in model.steps] if hasattr(model, "steps") else [model]
    steps = [s for s in steps if s is not None and s != "passthrough"]
    if not steps:
        return None
    scalers: list[tuple[Array | None, Array | None]] = []
    for step in steps[:-1]:
        found = _scaler_step(step)
        if found is None:
            return None
        scalers.append(found)
    final = steps[-1]
    kind = _linear_kind(final)
    if kind is None:
        return None
    coef_t = final.coef_.T if final.coef_.ndim == 2 else final.coef_
    intercept = final.intercept_
    by_dtype = {
        dt: [
            (None if m is None else m.astype(dt), None if s is None else s.astype(dt))
            for m, s in scalers
        ]
        for dt in _FLOATS
    }
    classes = getattr(final, "classes_", None)

    def predict(x: Array) -> Array:
        if scalers:
            dtype = x.dtype if x.dtype in _FLOATS else _FLOATS[0]
            x = x.astype(dtype, copy=True)
            for mean, scale in by_dtype[dtype]:
                if mean is not None:
                    x -= mean
                if scale is not None:
                    x /= scale
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ValueError("Input X contains NaN or infinity.")
        scores = x @ coef_t + intercept
        if kind == "regressor":
            return scores  # type: ignore[no-any-return]
        if scores.ndim > 1 and scores.shape[1] == 1:
            scores = scores.reshape(-1)
        indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else scores.argmax(axis=1)
        return classes.take(indices, axis=0)  # type: ignore[union-attr,no-any-return]

    return predict


def probes(n_features: int, dtype: np.dtype[Any], seed: int = 0) -> list[Array]:
    """Inputs to compare a compiled path with ``predict`` on: several batch sizes and scales."""
    rng = np.random.default_rng(seed)
    out: list[Array] = []
    for rows in (1, 2, 7, 64, 257):
        for scale in (1.0, 8.0):
            values = rng.normal(0.0, scale, size=(rows, n_features))
            if dtype.kind in "iu":
                values = np.abs(np.rint(values))
            out.append(values.astype(dtype))
    return out


def verify(compiled: Compiled, predict: Callable[[Array], Any], inputs: list[Array]) -> bool:
    """True when ``compiled`` equals ``predict`` exactly (values and dtype) on every input."""
    for x in inputs:
        try:
            expected = np.asarray(predict(x))
            got = compiled(x)
        except Exception:
            return False
        if got.dtype != expected.dtype or not np.array_equal(got, expected):
            return False
    return True

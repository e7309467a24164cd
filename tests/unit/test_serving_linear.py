"""Compiled scikit-learn linear pipelines equal ``model.predict`` exactly, or are not used."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, RidgeClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

from kaip.serving.runtimes import linear

X, Y = (a[:400] for a in load_digits(return_X_y=True))
XR, YR = make_regression(n_samples=200, n_features=8, random_state=0)


def fitted(model: Any, binary: bool = False) -> Any:
    y = (Y > 4).astype(int) if binary else Y
    return model.fit(X, y)


@pytest.mark.parametrize(
    "model",
    [
        fitted(Pipeline([("s", StandardScaler()), ("c", LogisticRegression(max_iter=300))])),
        fitted(make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)), binary=True),
        fitted(make_pipeline(StandardScaler(with_mean=False), LinearSVC())),
        fitted(RidgeClassifier()),
        fitted(LogisticRegression(max_iter=300)),
    ],
    ids=["scaler+logreg", "binary", "no-mean+svc", "ridge-classifier", "bare-logreg"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_classifiers_compile_to_identical_predictions(model: Any, dtype: Any) -> None:
    compiled = linear.compile_linear(model)
    assert compiled is not None
    x = X.astype(dtype)
    got, expected = compiled(x), model.predict(x)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    assert linear.verify(compiled, model.predict, linear.probes(64, np.dtype(dtype)))


@pytest.mark.parametrize("model", [LinearRegression(), make_pipeline(StandardScaler(), Ridge())])
def test_regressors_compile_to_identical_predictions(model: Any) -> None:
    model.fit(XR, YR)
    compiled = linear.compile_linear(model)
    assert compiled is not None
    for dtype in (np.float32, np.float64):
        x = XR.astype(dtype)
        np.testing.assert_array_equal(compiled(x), model.predict(x))


@pytest.mark.parametrize(
    "model",
    [
        fitted(make_pipeline(MinMaxScaler(), LogisticRegression(max_iter=300))),
        fitted(DecisionTreeClassifier(max_depth=3)),
    ],
    ids=["unknown-step", "not-linear"],
)
def test_unrecognised_models_are_left_to_predict(model: Any) -> None:
    assert linear.compile_linear(model) is None


def test_non_finite_input_is_refused_like_sklearn() -> None:
    model = fitted(make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)))
    compiled = linear.compile_linear(model)
    assert compiled is not None
    x = X[:2].astype(np.float32)
    x[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.predict(x)
    with pytest.raises(ValueError, match="NaN"):
        compiled(x)


def test_verify_catches_a_wrong_compilation() -> None:
    model = fitted(make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)))

    def off_by_one(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(x)) + 1

    assert not linear.verify(off_by_one, model.predict, linear.probes(64, np.dtype(np.float32)))

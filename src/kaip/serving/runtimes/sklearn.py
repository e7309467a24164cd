"""The scikit-learn / joblib runtime: a pickled estimator, pinned by digest, fast when linear.

Refuses to unpickle unless the artifact is pinned by ``sha256`` (verified before this module
sees the file) or marked ``trust: true``. On load it compiles recognised linear pipelines to
numpy (:mod:`kaip.serving.runtimes.linear`) and keeps the compiled path only for the input
dtypes where it matched ``model.predict`` exactly on probe inputs; ``compile_linear=False``
(``KAIP_SERVING__COMPILE_LINEAR=false``) keeps ``predict`` for everything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaip.errors import ArtifactError
from kaip.serving.artifacts import require_pinned
from kaip.serving.runtimes import linear
from kaip.serving.runtimes.base import NUMERIC_DATATYPES, Array, TensorSpec
from kaip.spec import Artifact

log = logging.getLogger(__name__)
INPUT = "input-0"
OUTPUT = "output-0"
_VERIFIED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64))


class SklearnRuntime:
    platform = "sklearn"
    batchable = True

    def __init__(self, path: Path, artifact: Artifact, *, compile_linear: bool = True) -> None:
        self.path = path
        self.artifact = artifact
        self.compile_linear = compile_linear
        self.model: Any = None
        self._fast: dict[np.dtype[Any], linear.Compiled] = {}
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()

    def load(self) -> None:
        require_pinned(self.artifact, self.path)
        try:
            import joblib
        except ImportError as exc:  # pragma: no cover - part of the sklearn extra
            raise ArtifactError("format sklearn needs joblib: pip install 'kaip[sklearn]'") from exc
        try:
            self.model = joblib.load(self.path)
        except Exception as exc:
            raise ArtifactError(f"cannot load {self.path} with joblib: {exc}") from exc
        if not hasattr(self.model, "predict"):
            raise ArtifactError(f"{self.path} holds a {type(self.model).__name__} with no predict")
        n_features = int(getattr(self.model, "n_features_in_", -1))
        self._inputs = (TensorSpec(INPUT, "FP64", (-1, n_features), NUMERIC_DATATYPES),)
        self._outputs = (TensorSpec(OUTPUT, self._output_datatype(), (-1,)),)
        self._compile(n_features)

    def _output_datatype(self) -> str:
        classes = getattr(self.model, "classes_", None)
        if classes is None:
            return "FP64"
        from kaip.serving.codec import datatype_of

        return datatype_of(np.asarray(classes))

    def _compile(self, n_features: int) -> None:
        if not self.compile_linear:
            log.info(
                "sklearn: %s served by its own predict (compile_linear is off)",
                type(self.model).__name__,
            )
            return
        compiled = linear.compile_linear(self.model) if n_features > 0 else None
        if compiled is None:
            log.info("sklearn: %s served by its own predict", type(self.model).__name__)
            return
        for dtype in _VERIFIED_DTYPES:
            if linear.verify(compiled, self.model.predict, linear.probes(n_features, dtype)):
                self._fast[dtype] = compiled
        log.info(
            "sklearn: %s compiled to numpy for %s",
            type(self.model).__name__,
            ", ".join(str(d) for d in self._fast) or "no dtype (kept predict)",
        )

    @property
    def compiled_dtypes(self) -> list[str]:
        return [str(d) for d in self._fast]

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return self._outputs

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        (x,) = inputs.values()
        fast = self._fast.get(x.dtype)
        y = fast(x) if fast is not None else np.asarray(self.model.predict(x))
        return {OUTPUT: y}

    def probe(self) -> dict[str, Array] | None:
        n_features = self._inputs[0].shape[1] if self._inputs else -1
        if n_features <= 0:
            return None
        return {INPUT: np.zeros((1, n_features), dtype=np.float32)}

"""The user Python class runtime (``format: python``, ``entrypoint: module:Class``).

The class contract, imported once at load with the artifact's directory on ``sys.path``::

    class MyModel:
        # optional metadata; without it any named tensors are accepted
        inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        outputs = [{"name": "y", "datatype": "FP32", "shape": [-1]}]
        batchable = True          # rows of several requests may be concatenated (default True)

        def __init__(self, artifact_path: str): ...   # load weights once

        def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

        # optional, for the OpenAI routes:
        def generate(self, prompt: str, *, max_tokens: int, temperature: float, top_p: float,
                     stop: list[str], seed: int | None) -> Iterator[str]: ...  # text pieces
        def chat_prompt(self, messages: list[dict[str, str]]) -> str: ...
        def embed(self, texts: list[str]) -> np.ndarray: ...      # one row per text
        def count_tokens(self, text: str) -> int: ...

``artifact_path`` is the resolved ``artifact.uri`` (a file or a directory). The uri's directory
is put on ``sys.path`` first, so ``entrypoint: model:Echo`` finds ``model.py`` next to it.

Importing runs the artifact's code, so it is loaded only when pinned or trusted (as pickles
are): with ``trust: true`` the entrypoint is imported as it is; with only ``sha256``, ``uri``
must name the entrypoint module's own ``.py`` file (the one the digest was checked against),
and that exact file is executed.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from kaip.errors import ArtifactError, KaipError, UntrustedArtifactError
from kaip.serving.artifacts import require_pinned
from kaip.serving.runtimes.base import Array, GenerationParams, TensorSpec
from kaip.spec import Artifact


def _specs(raw: Any, where: str) -> tuple[TensorSpec, ...]:
    if raw is None:
        return ()
    try:
        return tuple(
            TensorSpec(str(t["name"]), str(t["datatype"]), tuple(int(d) for d in t["shape"]))
            for t in raw
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(
            f"{where} must be a list of {{name, datatype, shape}} dicts ({exc})"
        ) from exc


def import_entrypoint(entrypoint: str, search_dir: Path, pinned: Path | None = None) -> type[Any]:
    """Import ``module:Class`` with ``search_dir`` first on ``sys.path``.

    With ``pinned`` (the file a ``sha256`` was verified against), the module is executed from
    exactly that file, and an entrypoint that names another module is refused before anything
    runs: a digest of one file says nothing about another.
    """
    module_name, _, class_name = entrypoint.partition(":")
    if str(search_dir) not in sys.path:
        sys.path.insert(0, str(search_dir))
    try:
        module = (
            importlib.import_module(module_name)
            if pinned is None
            else _import_file(entrypoint, module_name, pinned)
        )
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ArtifactError(
                f"entrypoint {entrypoint!r}: no module {exc.name!r} in {search_dir} or on sys.path"
            ) from exc
        raise ArtifactError(
            f"entrypoint {entrypoint!r}: module {module_name!r} failed while importing: {exc}"
        ) from exc
    except KaipError:
        raise
    except Exception as exc:
        raise ArtifactError(
            f"entrypoint {entrypoint!r}: module {module_name!r} failed while importing: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ArtifactError(f"entrypoint {entrypoint!r}: {module_name} has no class {class_name}")
    return cls


def _import_file(entrypoint: str, module_name: str, path: Path) -> ModuleType:
    if not (path.is_file() and path.suffix == ".py" and module_name == path.stem):
        raise UntrustedArtifactError(
            f"artifact.sha256 pins {path}, but entrypoint {entrypoint!r} imports module "
            f"{module_name!r}, which is not that file: point artifact.uri at the module's file "
            f"({module_name.replace('.', '/')}.py), or set trust: true to import it unpinned"
        )
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None  # a .py file always has both
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


class PythonRuntime:
    platform = "python"
    batchable = True

    def __init__(self, path: Path, artifact: Artifact) -> None:
        self.path = path
        self.artifact = artifact
        self.entrypoint = artifact.entrypoint or ""
        self.instance: Any = None
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()

    def load(self) -> None:
        require_pinned(self.artifact, self.path)
        search_dir = self.path if self.path.is_dir() else self.path.parent
        pinned = None if self.artifact.trust else self.path  # not trusted: pinned by sha256
        cls = import_entrypoint(self.entrypoint, search_dir, pinned)
        try:
            self.instance = cls(str(self.path))
        except Exception as exc:
            raise ArtifactError(
                f"entrypoint {self.entrypoint!r}: {cls.__name__}({str(self.path)!r}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._inputs = _specs(getattr(self.instance, "inputs", None), f"{cls.__name__}.inputs")
        self._outputs = _specs(getattr(self.instance, "outputs", None), f"{cls.__name__}.outputs")
        self.batchable = bool(getattr(self.instance, "batchable", True))
        if not any(hasattr(self.instance, m) for m in ("predict", "generate", "embed")):
            raise ArtifactError(
                f"entrypoint {self.entrypoint!r}: {cls.__name__} defines none of predict, "
                "generate or embed"
            )

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return self._outputs

    @property
    def can_predict(self) -> bool:
        return hasattr(self.instance, "predict")

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        result = self.instance.predict(dict(inputs))
        if not isinstance(result, Mapping):
            raise TypeError(f"predict must return a dict of arrays, got {type(result).__name__}")
        return {str(k): np.asarray(v) for k, v in result.items()}

    def probe(self) -> dict[str, Array] | None:
        return None

    # Optional capabilities, present when the user class has them.
    @property
    def can_generate(self) -> bool:
        return hasattr(self.instance, "generate")

    @property
    def can_embed(self) -> bool:
        return hasattr(self.instance, "embed")

    def generate(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        return iter(
            self.instance.generate(
                prompt,
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                stop=list(params.stop),
                seed=params.seed,
            )
        )

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        custom = getattr(self.instance, "chat_prompt", None)
        if custom is not None:
            return str(custom([dict(m) for m in messages]))
        lines = [f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages]
        return "\n".join([*lines, "assistant:"])

    def embed(self, texts: Sequence[str]) -> Array:
        return np.atleast_2d(np.asarray(self.instance.embed(list(texts)), dtype=np.float32))

    def count_tokens(self, text: str) -> int:
        custom = getattr(self.instance, "count_tokens", None)
        return int(custom(text)) if custom is not None else len(text.split())

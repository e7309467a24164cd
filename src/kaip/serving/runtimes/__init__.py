"""Model runtimes behind one :class:`~kaip.serving.runtimes.base.Runtime` protocol.

:func:`create` picks the runtime for an artifact's ``format``; heavy libraries (scikit-learn,
ONNX Runtime, transformers, llama.cpp) are imported only by the runtime that needs them, at load.
"""

from __future__ import annotations

from pathlib import Path

from kaip.serving.runtimes.base import (
    Embedder,
    GenerationParams,
    Runtime,
    TensorSpec,
    TextGenerator,
)
from kaip.spec import Artifact


def create(artifact: Artifact, path: Path, *, compile_linear: bool = True) -> Runtime:
    """A runtime for ``artifact`` at the local ``path``; call ``load()`` on it next.

    ``compile_linear`` (``settings.serving.compile_linear``): whether the sklearn runtime may
    serve a linear pipeline by its compiled arithmetic instead of ``predict``."""
    if artifact.format == "sklearn":
        from kaip.serving.runtimes.sklearn import SklearnRuntime

        return SklearnRuntime(path, artifact, compile_linear=compile_linear)
    if artifact.format == "onnx":
        from kaip.serving.runtimes.onnx import OnnxRuntime

        return OnnxRuntime(path, artifact)
    if artifact.format == "python":
        from kaip.serving.runtimes.python import PythonRuntime

        return PythonRuntime(path, artifact)
    if artifact.format == "gguf":
        from kaip.serving.runtimes.llamacpp import LlamaCppRuntime

        return LlamaCppRuntime(path, artifact)
    from kaip.serving.runtimes.huggingface import (
        SentenceTransformersRuntime,
        TransformersRuntime,
    )

    if artifact.format == "sentence-transformers":
        return SentenceTransformersRuntime(path, artifact)
    return TransformersRuntime(path, artifact)


def generator_of(runtime: Runtime) -> TextGenerator | None:
    """The runtime as a text generator, when it can generate."""
    if getattr(runtime, "can_generate", False) and isinstance(runtime, TextGenerator):
        return runtime
    return None


def embedder_of(runtime: Runtime) -> Embedder | None:
    """The runtime as an embedder, when it can embed."""
    if getattr(runtime, "can_embed", False) and isinstance(runtime, Embedder):
        return runtime
    return None


__all__ = [
    "Embedder",
    "GenerationParams",
    "Runtime",
    "TensorSpec",
    "TextGenerator",
    "create",
    "embedder_of",
    "generator_of",
]

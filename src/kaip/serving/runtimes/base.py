"""The contract every model runtime meets, and the tensor metadata it reports.

A runtime turns one artifact into something that predicts on a batch: ``load()`` once, then
``predict(inputs)`` with arrays whose first axis is the batch (rows). Generative and embedding
models add the optional capabilities :class:`TextGenerator` and :class:`Embedder`, which the
OpenAI routes use. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy.typing as npt

Array = npt.NDArray[Any]

NUMERIC_DATATYPES: frozenset[str] = frozenset(
    {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
     "FP32", "FP64"}
)  # fmt: skip


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model, as OIP v2 metadata shows it (``-1`` = any size).

    ``accepts`` lists the datatypes the runtime takes as sent; another numeric datatype is cast
    to ``datatype`` when that loses no kind (FP64 -> FP32 yes, FP32 -> INT64 no).
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    accepts: frozenset[str] = field(default=frozenset())

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@runtime_checkable
class Runtime(Protocol):
    """A loaded model that predicts on a batch of rows.

    ``batchable`` says whether rows of several requests may be concatenated into one call (every
    input and output has the batch as its first axis). ``platform`` names the runtime in model
    metadata (``sklearn``, ``onnxruntime``, ``python``, ...).
    """

    platform: str
    batchable: bool

    def load(self) -> None: ...

    @property
    def inputs(self) -> Sequence[TensorSpec]: ...

    @property
    def outputs(self) -> Sequence[TensorSpec]: ...

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]: ...

    def probe(self) -> dict[str, Array] | None:
        """A small valid input to warm up and time the model with, when the runtime knows one."""
        ...


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


class TextToText:
    """A text generator's OIP v2 face: one ``text`` (BYTES) in, one ``text`` out."""

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return (TensorSpec("text", "BYTES", (1,)),)

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return (TensorSpec("text", "BYTES", (1,)),)


@runtime_checkable
class TextGenerator(Protocol):
    """A model that continues text, one token (a string piece) at a time."""

    def generate(self, prompt: str, params: GenerationParams) -> Iterator[str]: ...

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str: ...

    def count_tokens(self, text: str) -> int: ...


@runtime_checkable
class Embedder(Protocol):
    """A model that maps texts to vectors (one row per text)."""

    def embed(self, texts: Sequence[str]) -> Array: ...

    def count_tokens(self, text: str) -> int: ...

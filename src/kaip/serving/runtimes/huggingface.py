"""Optional runtimes for Hugging Face models: sentence-transformers embeddings and transformers
text generation. Both are imported lazily (extra ``transformers``) and load from a local
directory only: this server never downloads weights from a hub.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaip.errors import ArtifactError
from kaip.serving.runtimes.base import Array, GenerationParams, TensorSpec, TextToText
from kaip.spec import Artifact

TEXT = "text"
EMBEDDING = "embedding"


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ArtifactError(
            f"this model needs {module}: pip install 'kaip[transformers]' ({exc})"
        ) from exc


class SentenceTransformersRuntime:
    """Embeddings; OIP v2 input ``text`` (BYTES, one text per row), output ``embedding``."""

    platform = "sentence-transformers"
    batchable = True
    can_generate = False
    can_embed = True

    def __init__(self, path: Path, artifact: Artifact) -> None:
        self.path = path
        self.model: Any = None

    def load(self) -> None:
        st = _require("sentence_transformers")
        try:
            self.model = st.SentenceTransformer(str(self.path), local_files_only=True)
        except Exception as exc:
            raise ArtifactError(f"cannot load {self.path} as sentence-transformers: {exc}") from exc

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        return (TensorSpec(TEXT, "BYTES", (-1,)),)

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        return (TensorSpec(EMBEDDING, "FP32", (-1, -1)),)

    def embed(self, texts: Sequence[str]) -> Array:
        vectors = self.model.encode(list(texts), convert_to_numpy=True)
        return np.atleast_2d(np.asarray(vectors, dtype=np.float32))

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        (texts,) = inputs.values()
        decoded = [t.decode() if isinstance(t, bytes) else str(t) for t in texts.reshape(-1)]
        return {EMBEDDING: self.embed(decoded)}

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenizer(text)["input_ids"])

    def probe(self) -> dict[str, Array] | None:
        return None


class TransformersRuntime(TextToText):
    """Causal language models; OIP v2 ``text`` in, ``text`` out; streaming for OpenAI."""

    platform = "transformers"
    batchable = False
    can_generate = True
    can_embed = False

    def __init__(self, path: Path, artifact: Artifact) -> None:
        self.path = path
        self.model: Any = None
        self.tokenizer: Any = None

    def load(self) -> None:
        tf = _require("transformers")
        try:
            self.tokenizer = tf.AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            self.model = tf.AutoModelForCausalLM.from_pretrained(
                str(self.path), local_files_only=True
            )
        except Exception as exc:
            raise ArtifactError(f"cannot load {self.path} with transformers: {exc}") from exc

    def generate(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        tf = _require("transformers")
        streamer = tf.TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        encoded = self.tokenizer(prompt, return_tensors="pt")
        kwargs: dict[str, Any] = {
            **encoded,
            "max_new_tokens": params.max_tokens,
            "streamer": streamer,
            "do_sample": params.temperature > 0,
        }
        if params.temperature > 0:
            kwargs.update(temperature=params.temperature, top_p=params.top_p)
        worker = threading.Thread(target=self.model.generate, kwargs=kwargs, daemon=True)
        worker.start()
        yield from streamer
        worker.join()

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return str(
                self.tokenizer.apply_chat_template(
                    [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
                )
            )
        return "\n".join([*(f"{m['role']}: {m['content']}" for m in messages), "assistant:"])

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        (texts,) = inputs.values()
        prompts = [t.decode() if isinstance(t, bytes) else str(t) for t in texts.reshape(-1)]
        params = GenerationParams()
        out = np.array(["".join(self.generate(p, params)).encode() for p in prompts], dtype=object)
        return {TEXT: out}

    def probe(self) -> dict[str, Array] | None:
        return None

"""GGUF models on llama.cpp (``format: gguf``), through llama-cpp-python in this process.

The engine is llama.cpp's own: its tokenizer counts tokens, its sampler picks them (greedy at
temperature 0, so the same prompt gives the same text), and its KV cache keeps the longest
prefix a new prompt shares with the previous one (:attr:`LlamaCppRuntime.cached_prompt_tokens`
counts the prompt tokens that were not evaluated again). Text is produced one token at a time:
:meth:`LlamaCppRuntime.generate` yields exactly one piece per generated token (an empty piece
while a character's UTF-8 bytes are still incomplete), so the OpenAI routes' token counts are the
engine's.

One llama.cpp context serves one sequence at a time: generations take turns, a whole generation
each, under a lock. A generation ends by itself after ``max_tokens`` tokens (the reader takes
no more); closing the generator (the client went away, a stop string was found) ends it at the
current token. Either frees the engine for the next request.

Never parses requests and never downloads weights: the file is the artifact kaip resolved.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaip.errors import ArtifactError, InferenceError
from kaip.serving.runtimes.base import Array, GenerationParams, TextToText
from kaip.spec import Artifact

TEXT = "text"
DEFAULT_CONTEXT = 4096  # tokens, when the model was trained for more (llama.cpp's KV cache size)
CONTEXT_PAD = 256


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ArtifactError(
            f"format 'gguf' needs llama.cpp's Python binding: pip install 'kaip[llm]' ({exc})"
        ) from exc
    return llama_cpp


class LlamaCppRuntime(TextToText):
    """Text generation on a GGUF file; OIP v2 ``text`` in, ``text`` out; streaming for OpenAI."""

    platform = "llama.cpp"
    batchable = False
    can_generate = True
    can_embed = False

    def __init__(self, path: Path, artifact: Artifact, *, context: int = 0) -> None:
        self.path = path
        self.context = context
        self.llm: Any = None
        self._lock = threading.Lock()
        self._template: Any = None
        self._lib: Any = None
        self.cached_prompt_tokens = 0
        """Prompt tokens found in the KV cache (not evaluated again), over all generations."""
        self.prompt_tokens = 0
        """Prompt tokens of all generations."""
        self.generated_tokens = 0
        self.busy = 0
        """Generations holding the engine now (0 or 1)."""

    def load(self) -> None:
        llama_cpp = self._lib = _llama_cpp()
        if not self.path.is_file():
            raise ArtifactError(f"format 'gguf' needs a .gguf file, and {self.path} is not a file")
        try:
            # the vocabulary alone (no weights) says how long a context the model was trained for
            meta = llama_cpp.Llama(
                model_path=str(self.path), vocab_only=True, verbose=False
            ).metadata
            length = meta.get(f"{meta.get('general.architecture')}.context_length", "")
            trained = int(length) if str(length).isdigit() else DEFAULT_CONTEXT
            context = self.context or min(trained, DEFAULT_CONTEXT)
            # llama.cpp pads its context to a multiple of 256, the binding's token buffer not
            context = -(-context // CONTEXT_PAD) * CONTEXT_PAD
            llm = llama_cpp.Llama(model_path=str(self.path), n_ctx=context, seed=0, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ArtifactError(f"llama.cpp cannot load {self.path} as GGUF: {exc}") from exc
        self.llm = llm
        template = llm.metadata.get("tokenizer.chat_template")
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._template = Jinja2ChatFormatter(
                template=template,
                eos_token=self._piece(llm.token_eos()),
                bos_token=self._piece(llm.token_bos()),
            )

    def _piece(self, token: int) -> str:
        return bytes(self.llm.detokenize([token], special=True)).decode("utf-8", "replace")

    def tokenize(self, text: str) -> list[int]:
        """``text`` as the engine tokenizes a prompt (with BOS when the model asks for it)."""
        return list(self.llm.tokenize(text.encode("utf-8"), special=True))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def generate(self, prompt: str, params: GenerationParams) -> Iterator[str]:
        llm = self.llm
        tokens = self.tokenize(prompt) or [llm.token_bos()]
        context = min(llm.n_ctx(), len(llm.input_ids))
        room = context - len(tokens)
        if room < 1:
            raise InferenceError(
                f"the prompt is {len(tokens)} tokens, and this model's context holds "
                f"{context}; send a shorter prompt"
            )
        with self._lock:
            self.busy = 1
            try:
                yield from self._generate(tokens, params, room)
            finally:
                self.busy = 0

    def _generate(self, tokens: list[int], params: GenerationParams, room: int) -> Iterator[str]:
        llm = self.llm
        if params.seed is not None:
            llm.set_seed(params.seed)
        cached = _common_prefix(llm.input_ids[: llm.n_tokens], tokens)
        self.prompt_tokens += len(tokens)
        # llama.cpp evaluates the last token of a prompt again when the whole prompt is cached
        self.cached_prompt_tokens += min(cached, len(tokens) - 1)
        decoder = codecs.getincrementaldecoder("utf-8")("ignore")
        for produced, token in enumerate(
            llm.generate(
                tokens,
                temp=params.temperature,
                top_p=params.top_p,
                top_k=0 if params.temperature > 0 else 1,
                min_p=0.0,
                repeat_penalty=1.0,
                reset=True,
            ),
            start=1,
        ):
            if self._end_of_generation(token):
                return
            self.generated_tokens += 1
            yield decoder.decode(bytes(llm.detokenize([token])))
            if produced >= room:  # the context is full: nothing more fits
                return
            if produced >= params.max_tokens:
                # the reader takes no more than this: the thread feeding it would otherwise run
                # on (up to its window of pieces) holding the engine until it saw the cancel
                return

    def _end_of_generation(self, token: int) -> bool:
        """EOS, or another token that ends a turn (``<|eot_id|>``...), as llama.cpp says; the
        binding's own completion asks its model object the same way."""
        return bool(self._lib.llama_vocab_is_eog(self.llm._model.vocab, token))

    def engine_stats(self) -> dict[str, float]:
        """The engine's counts for ``/metrics`` (:data:`kaip.telemetry.ENGINE_TOKENS`), and the
        share of its context the KV cache holds (:data:`kaip.telemetry.KV_CACHE_USAGE`): the
        tokens of the generation running or, between generations, of the last one (kept for
        the next prompt's prefix), as llama.cpp's own server counts its used cells."""
        llm = self.llm
        size = llm.n_ctx() if llm is not None else 0
        held = min(int(llm.n_tokens), size) if llm is not None else 0
        return {
            "prompt_tokens": self.prompt_tokens,
            "prompt_cached_tokens": self.cached_prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "busy": self.busy,
            "kv_cache_usage": held / size if size > 0 else 0.0,
        }

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        if self._template is not None:
            return str(self._template(messages=[dict(m) for m in messages]).prompt)
        return "\n".join([*(f"{m['role']}: {m['content']}" for m in messages), "assistant:"])

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        (texts,) = inputs.values()
        prompts = [t.decode() if isinstance(t, bytes) else str(t) for t in texts.reshape(-1)]
        params = GenerationParams(temperature=0.0)
        out = np.array(["".join(self.generate(p, params)).encode() for p in prompts], dtype=object)
        return {TEXT: out}

    def probe(self) -> dict[str, Array] | None:
        return None


def _common_prefix(cached: Sequence[int], tokens: Sequence[int]) -> int:
    same = 0
    for a, b in zip(cached, tokens, strict=False):
        if a != b:
            break
        same += 1
    return same

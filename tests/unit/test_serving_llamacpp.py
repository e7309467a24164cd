"""The ``gguf`` runtime on real llama.cpp, with the tiny model examples/llm/make_gguf.py writes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from kaip.errors import ArtifactError, InferenceError
from kaip.serving.runtimes import GenerationParams, create, generator_of
from kaip.serving.runtimes.llamacpp import LlamaCppRuntime
from kaip.spec import Artifact

ROOT = Path(__file__).resolve().parents[2]
GREEDY = GenerationParams(max_tokens=16, temperature=0.0)


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gguf", reason="the test model is written with the gguf package")
    sys.path.insert(0, str(ROOT / "examples" / "llm"))
    try:
        import make_gguf
    finally:
        sys.path.pop(0)
    return Path(make_gguf.write(tmp_path_factory.mktemp("gguf") / "m.gguf", context=128))


@pytest.fixture(scope="module")
def runtime(gguf_file: Path) -> LlamaCppRuntime:
    pytest.importorskip("llama_cpp", reason="format gguf needs kaip[llm]")
    loaded = create(Artifact(uri="m.gguf", format="gguf"), gguf_file)
    assert isinstance(loaded, LlamaCppRuntime)
    loaded.load()
    return loaded


def _text(runtime: Any, prompt: str, params: GenerationParams = GREEDY) -> list[str]:
    pieces = []
    for piece in runtime.generate(prompt, params):
        pieces.append(piece)
        if len(pieces) == params.max_tokens:
            break
    return pieces


def test_gguf_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if kaip[llm] were not installed
    runtime = create(Artifact(uri="m.gguf", format="gguf"), tmp_path / "m.gguf")
    with pytest.raises(ArtifactError, match=r"pip install 'kaip\[llm\]'"):
        runtime.load()


def test_not_a_gguf_file_is_an_artifact_error(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="format gguf needs kaip[llm]")
    bad = tmp_path / "m.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="cannot load"):
        create(Artifact(uri="m.gguf", format="gguf"), bad).load()


def test_greedy_generation_is_deterministic_one_piece_per_token(runtime: LlamaCppRuntime) -> None:
    assert generator_of(runtime) is runtime
    first = _text(runtime, "the sea")
    assert first == _text(runtime, "the sea")
    assert len(first) == 16 and "".join(first).strip()
    before = runtime.engine_stats()["generated_tokens"]
    _text(runtime, "the river")
    assert runtime.engine_stats()["generated_tokens"] - before == 16


def test_closing_a_generation_frees_the_engine(runtime: LlamaCppRuntime) -> None:
    pieces = runtime.generate("the sea", GenerationParams(max_tokens=100, temperature=0.0))
    next(pieces)
    assert runtime.engine_stats()["busy"] == 1
    pieces.close()  # what the generation thread does when the client went away
    assert runtime.engine_stats()["busy"] == 0
    assert len(_text(runtime, "the moon")) == 16  # the lock was released


def test_a_generation_ends_by_itself_at_max_tokens_and_reports_the_context_it_holds(
    runtime: LlamaCppRuntime,
) -> None:
    """Read to its end, not cut by a reader: the engine stops at max_tokens (the generation
    thread would otherwise run ahead of the reader's cut, holding the engine), and its KV cache
    holds the prompt and the tokens generated after it, all but the last (never evaluated)."""
    before = runtime.engine_stats()["generated_tokens"]
    pieces = list(runtime.generate("the sea", GenerationParams(max_tokens=5, temperature=0.0)))
    assert len(pieces) == 5
    stats = runtime.engine_stats()
    assert stats["generated_tokens"] - before == 5
    assert stats["kv_cache_usage"] == (runtime.count_tokens("the sea") + 5 - 1) / 256


def test_a_prompt_longer_than_the_context_is_refused(runtime: LlamaCppRuntime) -> None:
    with pytest.raises(InferenceError, match="context holds 256"):
        next(runtime.generate("sea " * 300, GREEDY))


def test_counts_are_the_engines_and_the_prefix_is_reused(runtime: LlamaCppRuntime) -> None:
    assert runtime.count_tokens("the sea") == len(runtime.llm.tokenize(b"the sea", special=True))
    assert runtime.count_tokens("the sea") == 3  # <s>, "▁the", "▁sea": words are pieces
    shared = "the sea and the river and the mountain " * 3
    _text(runtime, shared + "north")
    before = runtime.engine_stats()["prompt_cached_tokens"]
    _text(runtime, shared + "south")
    assert runtime.engine_stats()["prompt_cached_tokens"] - before >= 20


def test_chat_uses_the_template_in_the_file(runtime: LlamaCppRuntime) -> None:
    prompt = runtime.chat_prompt([{"role": "user", "content": "hi"}])
    assert prompt == "user: hi\nassistant:"


def test_oip_predict_is_the_greedy_text(runtime: LlamaCppRuntime) -> None:
    import numpy as np

    assert [(s.name, s.datatype) for s in runtime.inputs] == [("text", "BYTES")]
    out = runtime.predict({"text": np.array([b"the sea"], dtype=object)})
    expected = "".join(runtime.generate("the sea", GenerationParams(temperature=0.0)))
    assert out["text"].tolist() == [expected.encode()]

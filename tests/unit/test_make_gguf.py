"""examples/llm/make_gguf.py's shape options: llama.cpp loads the shape asked for and runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "llm" / "make_gguf.py"


def test_a_shape_of_its_own_is_written_and_llama_cpp_runs_it(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf", reason="the test model is written with the gguf package")
    llama_cpp = pytest.importorskip("llama_cpp", reason="format gguf needs kaip[llm]")
    path = tmp_path / "shaped.gguf"
    command = [
        sys.executable, str(SCRIPT), str(path), "--context", "64", "--embed", "48",
        "--layers", "3", "--feed-forward", "80", "--heads", "6", "--kv-heads", "2", "--f16",
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)

    reader = gguf.GGUFReader(str(path))

    def field(name: str) -> int:
        value = reader.fields[name]
        return int(value.parts[value.data[0]][0])

    assert [field(f"llama.{key}") for key in (
        "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
        "attention.head_count_kv",
    )] == [48, 3, 80, 6, 2]  # fmt: skip
    tensors = {t.name: t for t in reader.tensors}
    assert len([n for n in tensors if n.endswith("attn_q.weight")]) == 3
    assert tensors["blk.0.attn_k.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert sorted(int(n) for n in tensors["blk.0.attn_k.weight"].shape) == [16, 48]  # 2 of 6 heads
    assert tensors["blk.2.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["output_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, seed=0, verbose=False)
    assert llm.n_embd() == 48
    answer = llm.create_completion("the sea", max_tokens=8, temperature=0.0)
    assert answer["usage"]["completion_tokens"] > 0


def test_a_shape_llama_cpp_cannot_run_is_refused_naming_the_option(tmp_path: Path) -> None:
    pytest.importorskip("gguf", reason="the test model is written with the gguf package")
    path = tmp_path / "bad.gguf"
    for options, message in (
        (["--heads", "5"], "--embed 64 must be --heads (5) times an even head width"),
        (["--heads", "4", "--kv-heads", "3"], "--heads 4 must be a multiple of --kv-heads (3)"),
        (["--layers", "0"], "--layers is 0; give 1 to 128"),
    ):
        done = subprocess.run(
            [sys.executable, str(SCRIPT), str(path), *options], capture_output=True, text=True
        )
        assert done.returncode == 2
        assert message in done.stderr
        assert "Traceback" not in done.stderr
    assert not path.exists()

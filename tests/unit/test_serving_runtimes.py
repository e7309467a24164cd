"""Each runtime loads a real artifact and predicts what the library itself predicts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from kaip.serving.runtimes import create, embedder_of, generator_of
from kaip.serving.runtimes.sklearn import SklearnRuntime
from kaip.spec import Artifact

X, Y = (a[:300] for a in load_digits(return_X_y=True))


@pytest.fixture(scope="module")
def pipeline() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, Y)


def test_onnx_runtime_predicts_like_the_converted_pipeline(tmp_path: Path, pipeline: Any) -> None:
    from skl2onnx import to_onnx

    onx = to_onnx(pipeline, X[:1].astype(np.float32), options={"zipmap": False})
    path = tmp_path / "digits.onnx"
    path.write_bytes(onx.SerializeToString())
    runtime = create(Artifact(uri="digits.onnx", format="onnx"), path)
    runtime.load()
    assert runtime.platform == "onnxruntime" and runtime.batchable
    (spec,) = runtime.inputs
    assert spec.datatype == "FP32" and spec.shape == (-1, 64)
    assert {s.name for s in runtime.outputs} == {"label", "probabilities"}
    out = runtime.predict({spec.name: X.astype(np.float32)})
    agreement = (out["label"] == pipeline.predict(X.astype(np.float32))).mean()
    assert agreement > 0.99  # ONNX computes in float32; sklearn in float64
    assert out["probabilities"].shape == (len(X), 10)


def test_sklearn_runtime_compiles_and_keeps_predict_for_the_rest(
    tmp_path: Path, pipeline: Any
) -> None:
    joblib.dump(pipeline, tmp_path / "linear.joblib")
    joblib.dump(DecisionTreeClassifier(max_depth=4).fit(X, Y), tmp_path / "tree.joblib")
    linear = SklearnRuntime(
        tmp_path / "linear.joblib", Artifact(uri="x", format="sklearn", trust=True)
    )
    linear.load()
    assert linear.compiled_dtypes == ["float32", "float64", "int64"]
    tree = SklearnRuntime(tmp_path / "tree.joblib", Artifact(uri="x", format="sklearn", trust=True))
    tree.load()
    assert tree.compiled_dtypes == []
    for runtime, model in ((linear, pipeline), (tree, joblib.load(tmp_path / "tree.joblib"))):
        for dtype in (np.float32, np.float64, np.int64, np.uint8):
            x = X.astype(dtype)
            got = runtime.predict({"input-0": x})["output-0"]
            np.testing.assert_array_equal(got, model.predict(x))


def test_compile_linear_off_serves_every_dtype_by_predict(
    tmp_path: Path, pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KAIP_SERVING__COMPILE_LINEAR=false reaches the runtime the server loads (the benchmark's
    "kaip (predict)" row): nothing compiled, answers from the model's own predict."""
    from kaip.serving.server import ServeOptions, build, load
    from kaip.settings import load_settings

    joblib.dump(pipeline, tmp_path / "model.joblib")
    (tmp_path / "kaip.yaml").write_text(
        "apiVersion: kaip.dev/v1alpha1\nkind: Model\nmetadata: {name: m}\n"
        "spec: {owner: t, artifact: {uri: model.joblib, format: sklearn, trust: true}}\n"
    )
    options = ServeOptions(tmp_path / "kaip.yaml", "m", "127.0.0.1", 0)
    loaded = {}
    for value in ("true", "false"):
        monkeypatch.setenv("KAIP_SERVING__COMPILE_LINEAR", value)
        settings = load_settings()
        app, doc, _ = build(options, settings)
        load(app, doc, settings)
        runtime = app.model.runtime
        assert isinstance(runtime, SklearnRuntime)
        loaded[value] = runtime
    assert loaded["true"].compiled_dtypes == ["float32", "float64", "int64"]
    assert loaded["false"].compiled_dtypes == []
    for dtype in (np.float32, np.float64):
        x = X.astype(dtype)
        got = loaded["false"].predict({"input-0": x})["output-0"]
        np.testing.assert_array_equal(got, pipeline.predict(x))


def test_python_runtime_exposes_what_the_class_defines() -> None:
    root = Path(__file__).parents[2]
    artifact = Artifact(uri="model.py", format="python", entrypoint="model:TinyLM", trust=True)
    runtime = create(artifact, root / "examples" / "tiny-lm" / "model.py")
    runtime.load()
    assert generator_of(runtime) is not None and embedder_of(runtime) is not None
    assert [s.name for s in runtime.inputs] == ["x"]
    out = runtime.predict({"x": np.ones((2, 3), np.float32)})
    assert out["y"].tolist() == [3.0, 3.0]


def test_huggingface_runtimes_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from kaip.errors import ArtifactError

    # As if the extra were not installed, whether it is or not: None in sys.modules makes the
    # runtime's import raise ImportError.
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    runtime = create(Artifact(uri="m", format="sentence-transformers"), Path("/nonexistent"))
    with pytest.raises(ArtifactError, match=r"pip install 'kaip\[transformers\]'"):
        runtime.load()


TRANSFORMERS_MISSING = "optional extra kaip[transformers] is not installed"
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat"]


def tiny_hub_dir(tmp_path: Path, transformers: Any, model_class: Any, config: Any) -> Path:
    """A randomly initialised model and a word-piece tokenizer saved as a local model dir."""
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS))
    directory = tmp_path / "base"
    transformers.BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(directory)
    model_class(config).save_pretrained(directory)
    return directory


def test_sentence_transformers_runtime_embeds_like_the_library(tmp_path: Path) -> None:
    st = pytest.importorskip("sentence_transformers", reason=TRANSFORMERS_MISSING)
    transformers = pytest.importorskip("transformers", reason=TRANSFORMERS_MISSING)
    config = transformers.BertConfig(
        vocab_size=len(WORDS), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=32,
    )  # fmt: skip
    base = tiny_hub_dir(tmp_path, transformers, transformers.BertModel, config)
    model = st.SentenceTransformer(modules=[st.models.Transformer(str(base)), st.models.Pooling(8)])
    model.save(str(tmp_path / "st"))
    runtime = create(Artifact(uri="st", format="sentence-transformers"), tmp_path / "st")
    runtime.load()
    embedder = embedder_of(runtime)
    assert embedder is not None
    texts = ["the cat", "on the mat"]
    np.testing.assert_allclose(embedder.embed(texts), model.encode(texts), rtol=1e-5, atol=1e-6)


def test_transformers_runtime_streams_text(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="optional extra kaip[torch] is not installed")
    transformers = pytest.importorskip("transformers", reason=TRANSFORMERS_MISSING)
    from kaip.serving.runtimes import GenerationParams

    config = transformers.GPT2Config(vocab_size=len(WORDS), n_embd=8, n_layer=1, n_head=2,
                                     n_positions=32)  # fmt: skip
    base = tiny_hub_dir(tmp_path, transformers, transformers.GPT2LMHeadModel, config)
    runtime = create(Artifact(uri="base", format="transformers"), base)
    runtime.load()
    generator = generator_of(runtime)
    assert generator is not None
    pieces = list(generator.generate("the cat", GenerationParams(max_tokens=4, temperature=0)))
    assert all(isinstance(p, str) for p in pieces)
    assert "cat" in generator.chat_prompt([{"role": "user", "content": "the cat"}])

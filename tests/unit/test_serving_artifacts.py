"""Artifact URIs to verified local files, and refusals before any unpickling or import."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from kaip.errors import ArtifactError, UntrustedArtifactError
from kaip.serving.artifacts import resolve
from kaip.serving.runtimes import create
from kaip.spec import Artifact

CONTENT = b"model bytes"
DIGEST = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            status = 200 if self.path == "/model.bin" else 404
            self.send_response(status)
            self.send_header("Content-Length", str(len(CONTENT)))
            self.end_headers()
            self.wfile.write(CONTENT)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()


def onnx(uri: str, sha256: str | None = None) -> Artifact:
    return Artifact(uri=uri, format="onnx", sha256=sha256)


def test_relative_and_file_uris(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(CONTENT)
    assert resolve(onnx("m.onnx"), tmp_path, tmp_path) == tmp_path / "m.onnx"
    uri = (tmp_path / "m.onnx").as_uri()
    assert resolve(onnx(uri, DIGEST), Path("/elsewhere"), tmp_path) == tmp_path / "m.onnx"
    with pytest.raises(ArtifactError, match="not found"):
        resolve(onnx("missing.onnx"), tmp_path, tmp_path)


def test_a_digest_mismatch_is_untrusted(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"something else")
    with pytest.raises(UntrustedArtifactError, match="pins"):
        resolve(onnx("m.onnx", DIGEST), tmp_path, tmp_path)


def test_gs_is_refused_at_validation_and_registry_references_by_the_server(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="gs:// is not supported"):
        onnx("gs://bucket/m.onnx")
    with pytest.raises(ArtifactError, match="reference to kaip's model registry"):
        resolve(onnx("registry://m@1"), tmp_path, tmp_path)


def test_http_downloads_once_into_the_cache(
    tmp_path: Path, http_server: tuple[str, list[str]]
) -> None:
    base, hits = http_server
    first = resolve(onnx(f"{base}/model.bin", DIGEST), tmp_path, tmp_path / "cache")
    second = resolve(onnx(f"{base}/model.bin", DIGEST), tmp_path, tmp_path / "cache")
    assert first == second and first.read_bytes() == CONTENT
    assert hits == ["/model.bin"]
    with pytest.raises(UntrustedArtifactError):
        resolve(onnx(f"{base}/model.bin", "0" * 64), tmp_path, tmp_path / "other")
    with pytest.raises(ArtifactError, match="HTTP 404"):
        resolve(onnx(f"{base}/nope.bin"), tmp_path, tmp_path / "cache")


def test_sklearn_refuses_an_unpinned_untrusted_pickle(tmp_path: Path) -> None:
    artifact = Artifact(uri="m.joblib", format="sklearn", trust=True).model_copy(
        update={"trust": False}
    )
    (tmp_path / "m.joblib").write_bytes(b"not even a pickle")
    with pytest.raises(UntrustedArtifactError, match="unpickling runs code"):
        create(artifact, tmp_path / "m.joblib").load()


def test_python_entrypoint_errors_name_the_piece(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "fine.py").write_text("class Model:\n    def __init__(self, path):\n        pass\n")

    def load(entrypoint: str) -> None:
        artifact = Artifact(uri="x", format="python", entrypoint=entrypoint, trust=True)
        create(artifact, tmp_path).load()

    with pytest.raises(ArtifactError, match="no module 'absent'"):
        load("absent:Model")
    with pytest.raises(ArtifactError, match="failed while importing: RuntimeError: boom"):
        load("broken:Model")
    with pytest.raises(ArtifactError, match="has no class Other"):
        load("fine:Other")
    with pytest.raises(ArtifactError, match="none of predict, generate or embed"):
        load("fine:Model")


def test_fetch_warms_the_cache_the_server_reads(
    tmp_path: Path, http_server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kaip.serving import fetch

    base, hits = http_server
    spec = tmp_path / "kaip.yaml"
    spec.write_text(
        "apiVersion: kaip.dev/v1alpha1\nkind: Model\nmetadata: {name: m}\nspec:\n"
        f"  owner: t\n  artifact: {{uri: '{base}/model.bin', format: onnx, sha256: {DIGEST}}}\n"
    )
    monkeypatch.setenv("KAIP_SERVING__ARTIFACT_CACHE_DIR", str(tmp_path / "cache"))
    assert fetch.main([str(spec), "--model", "m"]) == 0
    cached = resolve(onnx(f"{base}/model.bin", DIGEST), tmp_path, tmp_path / "cache")
    assert cached.read_bytes() == CONTENT and hits == ["/model.bin"]
    assert fetch.main([str(spec), "--model", "other"]) == 2


def test_python_code_needs_sha256_or_trust_at_validation_and_at_load(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "model.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "class Model:\n    def __init__(self, path):\n        pass\n"
        "    def predict(self, inputs):\n        return inputs\n"
    )
    with pytest.raises(ValueError, match="imports and runs the artifact's code"):
        Artifact(uri="model.py", format="python", entrypoint="model:Model")
    # A spec that reached the server unchecked (an old CRD, a hand-built object) is refused too.
    unchecked = Artifact(uri="model.py", format="python", entrypoint="model:Model", trust=True)
    unchecked = unchecked.model_copy(update={"trust": False})
    with pytest.raises(UntrustedArtifactError, match=r"pin artifact\.sha256 .* or set trust: true"):
        create(unchecked, tmp_path / "model.py").load()
    assert not marker.exists()


def test_code_over_plain_http_needs_a_digest_even_when_trusted(tmp_path: Path) -> None:
    (tmp_path / "m.joblib").write_bytes(b"not even a pickle")
    for fmt, extra in (("sklearn", {}), ("python", {"entrypoint": "m:Model"})):
        with pytest.raises(ValueError, match="over plain http:// anyone on the path can swap"):
            Artifact(uri="http://h/m.joblib", format=fmt, trust=True, **extra)  # type: ignore[arg-type]
        unchecked = Artifact(uri="https://h/m.joblib", format=fmt, trust=True, **extra)  # type: ignore[arg-type]
        unchecked = unchecked.model_copy(update={"uri": "http://h/m.joblib"})
        with pytest.raises(UntrustedArtifactError, match="came over plain http://"):
            create(unchecked, tmp_path / "m.joblib").load()
    pinned = Artifact(uri="http://h/m.onnx", format="sklearn", sha256=DIGEST)
    assert pinned.sha256 == DIGEST  # with a digest, plain http is fine: the bytes are checked


def test_a_pinned_python_artifact_runs_exactly_the_pinned_file(tmp_path: Path) -> None:
    source = (
        "class Model:\n    def __init__(self, path):\n        self.path = path\n"
        "    def predict(self, inputs):\n        return {'y': inputs['x'] * 2}\n"
    )
    (tmp_path / "pinned_model.py").write_text(source)
    marker = tmp_path / "ran"
    (tmp_path / "other_module.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Model: pass\n"
    )
    digest = hashlib.sha256(source.encode()).hexdigest()
    pinned = Artifact(
        uri="pinned_model.py", format="python", entrypoint="pinned_model:Model", sha256=digest
    )
    path = resolve(pinned, tmp_path, tmp_path)
    runtime = create(pinned, path)
    runtime.load()
    assert runtime.predict({"x": np.array([1, 2])})["y"].tolist() == [2, 4]
    # The digest covers pinned_model.py only: another module is refused before it is imported.
    elsewhere = pinned.model_copy(update={"entrypoint": "other_module:Model"})
    with pytest.raises(UntrustedArtifactError, match="imports module 'other_module', which is not"):
        create(elsewhere, path).load()
    assert not marker.exists()
    # A changed file no longer matches its pin: refused before anything runs.
    (tmp_path / "pinned_model.py").write_text(source + f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(UntrustedArtifactError, match="pins"):
        resolve(pinned, tmp_path, tmp_path)
    assert not marker.exists()

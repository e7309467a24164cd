"""Artifact-aware revisions: new weights are a new revision, the same weights the same one."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kaip.errors import ArtifactError, UntrustedArtifactError
from kaip.local.controller.pinning import RemotePinning, pin
from kaip.plan import revision_id
from kaip.serving.artifacts import content_digest, resolve
from kaip.serving.download import FetchLimits
from kaip.spec import App, Model


def model(uri: str = "model.joblib", **artifact: object) -> Model:
    return Model.model_validate(
        {
            "apiVersion": "kaip.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "digits"},
            "spec": {
                "owner": "ml",
                "artifact": {"uri": uri, "format": "sklearn", "trust": True, **artifact},
            },
        }
    )


def test_a_single_file_is_pinned_and_new_weights_make_a_new_revision(tmp_path: Path) -> None:
    weights = tmp_path / "model.joblib"
    weights.write_bytes(b"weights v1")
    first = pin(model(), tmp_path)
    assert isinstance(first.resource, Model)
    assert first.resource.spec.artifact.sha256 == hashlib.sha256(b"weights v1").hexdigest()
    assert first.revision != revision_id(model()), "the digest is not part of the revision"
    assert pin(model(), tmp_path).revision == first.revision, "same bytes, same revision"

    weights.write_bytes(b"weights v2")
    second = pin(model(), tmp_path)
    assert second.revision != first.revision
    assert second.artifact_digest == hashlib.sha256(b"weights v2").hexdigest()


def test_a_replica_of_the_old_revision_refuses_the_overwritten_file(tmp_path: Path) -> None:
    weights = tmp_path / "model.joblib"
    weights.write_bytes(b"weights v1")
    old = pin(model(), tmp_path).resource
    assert isinstance(old, Model)
    weights.write_bytes(b"weights v2")
    with pytest.raises(UntrustedArtifactError, match="the spec pins"):
        resolve(old.spec.artifact, tmp_path, tmp_path / "cache")


def test_a_kept_copy_serves_the_old_revision_after_the_file_is_overwritten(
    tmp_path: Path,
) -> None:
    """A deploy keeps each pinned local file under its sha256 in the artifact cache, so a
    replica of the old revision (undo) serves the old bytes, verified, once the file changed."""
    weights, cache = tmp_path / "model.joblib", tmp_path / "cache"
    weights.write_bytes(b"weights v1")
    old = pin(model(), tmp_path, RemotePinning(cache)).resource
    assert isinstance(old, Model)
    weights.write_bytes(b"weights v2")
    new = pin(model(), tmp_path, RemotePinning(cache)).resource
    assert isinstance(new, Model)
    served = resolve(old.spec.artifact, tmp_path, cache)
    assert served.read_bytes() == b"weights v1" and served.parent.name == old.spec.artifact.sha256
    assert resolve(new.spec.artifact, tmp_path, cache) == weights  # the file as it is now
    weights.unlink()  # gone altogether: the copy still serves
    assert resolve(old.spec.artifact, tmp_path, cache).read_bytes() == b"weights v1"
    (cache / str(old.spec.artifact.sha256) / "model.joblib").write_bytes(b"tampered")
    with pytest.raises(UntrustedArtifactError, match="the spec pins"):
        resolve(old.spec.artifact, tmp_path, cache)


def test_a_dry_run_and_an_oversized_file_keep_no_copy(tmp_path: Path) -> None:
    weights, cache = tmp_path / "model.joblib", tmp_path / "cache"
    weights.write_bytes(b"weights v1")
    pin(model(), tmp_path, RemotePinning(cache), keep=False)
    pin(model(), tmp_path, RemotePinning(cache, FetchLimits(max_bytes=4)))
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


def test_a_pinned_file_keeps_its_revision_and_a_mismatch_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"weights v1")
    good = model(sha256=hashlib.sha256(b"weights v1").hexdigest())
    assert pin(good, tmp_path).revision == revision_id(good)
    stale = model(sha256=hashlib.sha256(b"weights v0").hexdigest())
    with pytest.raises(UntrustedArtifactError, match=r"digits: .*model\.joblib has sha256"):
        pin(stale, tmp_path)


def test_file_uris_and_absolute_paths_are_pinned_too(tmp_path: Path) -> None:
    weights = tmp_path / "model.joblib"
    weights.write_bytes(b"weights v1")
    for uri in (f"file://{weights}", str(weights)):
        pinned = pin(model(uri), tmp_path / "elsewhere").resource
        assert isinstance(pinned, Model)
        assert pinned.spec.artifact.sha256 == hashlib.sha256(b"weights v1").hexdigest()


def test_a_directory_artifact_is_part_of_the_revision_by_its_tree(tmp_path: Path) -> None:
    tree = tmp_path / "model"
    (tree / "sub").mkdir(parents=True)
    (tree / "config.json").write_text("{}")
    (tree / "sub" / "weights.bin").write_bytes(b"v1")
    first = pin(model("model"), tmp_path)
    assert first.resource == model("model"), "a directory cannot be pinned by sha256"
    assert first.revision == revision_id(model("model"), first.artifact_digest)
    assert pin(model("model"), tmp_path).revision == first.revision

    revisions = {first.revision}
    (tree / "sub" / "weights.bin").write_bytes(b"v2")  # changed bytes
    revisions.add(pin(model("model"), tmp_path).revision)
    (tree / "sub" / "weights.bin").rename(tree / "weights.bin")  # renamed
    revisions.add(pin(model("model"), tmp_path).revision)
    (tree / "extra.txt").write_text("x")  # added
    revisions.add(pin(model("model"), tmp_path).revision)
    assert len(revisions) == 4


def test_remote_missing_and_app_resources_follow_the_spec_only(tmp_path: Path) -> None:
    remote = model("https://models.example/digits.joblib")
    assert pin(remote, tmp_path).revision == revision_id(remote)
    missing = model("not-there.joblib")
    assert pin(missing, tmp_path).revision == revision_id(missing)
    app = App.model_validate(
        {
            "apiVersion": "kaip.dev/v1alpha1",
            "kind": "App",
            "metadata": {"name": "web"},
            "spec": {"owner": "ml", "command": ["python", "app.py"]},
        }
    )
    assert pin(app, tmp_path).revision == revision_id(app)


def test_content_digest_of_a_missing_path_says_where(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        content_digest(tmp_path / "nope")


class Remote:
    """A real HTTP server on loopback serving ``body`` at /digits.joblib; counts its GETs."""

    def __init__(self) -> None:
        self.body = b"weights v1"
        self.gets = 0
        remote = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                remote.gets += 1
                if self.path != "/digits.joblib":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(remote.body)))
                self.end_headers()
                self.wfile.write(remote.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def remote() -> Iterator[Remote]:
    server = Remote()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_an_unpinned_remote_artifact_is_pinned_at_deploy_and_new_bytes_are_a_new_revision(
    remote: Remote, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    unpinned = model(f"{remote.url}/digits.joblib", format="onnx")
    first = pin(unpinned, tmp_path, RemotePinning(cache))
    assert isinstance(first.resource, Model)
    v1 = hashlib.sha256(b"weights v1").hexdigest()
    assert first.resource.spec.artifact.sha256 == first.artifact_digest == v1
    assert first.revision == revision_id(first.resource) != revision_id(unpinned)
    assert (cache / v1 / "digits.joblib").read_bytes() == b"weights v1"
    gets = remote.gets
    # a replica of that revision finds the pinned bytes in the cache: no second download
    assert resolve(first.resource.spec.artifact, tmp_path, cache).read_bytes() == b"weights v1"
    assert remote.gets == gets
    assert pin(unpinned, tmp_path, RemotePinning(cache)).revision == first.revision

    remote.body = b"weights v2"  # new bytes at the same URL
    second = pin(unpinned, tmp_path, RemotePinning(cache))
    assert second.revision != first.revision, "new remote bytes must be a new revision"
    assert second.artifact_digest == hashlib.sha256(b"weights v2").hexdigest()
    # the old revision keeps its own bytes: never a silent swap when its replica restarts
    assert resolve(first.resource.spec.artifact, tmp_path, cache).read_bytes() == b"weights v1"


def test_a_remote_artifact_that_cannot_be_pinned_refuses_the_deploy_naming_the_model(
    remote: Remote, tmp_path: Path
) -> None:
    with pytest.raises(ArtifactError) as raised:
        pin(
            model(f"{remote.url}/missing.joblib", format="onnx"),
            tmp_path,
            RemotePinning(tmp_path / "cache"),
        )
    message = raised.value.message
    assert message.startswith("Model digits: pinning its unpinned artifact at deploy time: ")
    assert "answered HTTP 404" in message and "pin artifact.sha256" in message
    already = model(f"{remote.url}/missing.joblib", format="onnx", sha256="ab" * 32)
    assert pin(already, tmp_path, RemotePinning(tmp_path / "cache")).resource == already
    assert remote.gets == 1, "a pinned remote artifact is not downloaded at deploy"


def test_kaip_apply_pins_an_unpinned_remote_artifact_in_what_it_sends(
    remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kaip.cli.kube_commands import load_manifests

    monkeypatch.setenv("KAIP_SERVING__ARTIFACT_CACHE_DIR", str(tmp_path / "cache"))
    spec = tmp_path / "kaip.yaml"
    spec.write_text(
        "apiVersion: kaip.dev/v1alpha1\nkind: Model\nmetadata: {name: digits}\nspec:\n"
        "  owner: ml\n"
        f"  artifact: {{uri: '{remote.url}/digits.joblib', format: onnx}}\n",
        encoding="utf-8",
    )

    def sent() -> tuple[str, set[str]]:
        manifests = load_manifests(spec, None)
        labels = {str(m["metadata"].get("labels", {}).get("kaip.dev/revision")) for m in manifests}
        return json.dumps(manifests), labels - {"None"}

    text, first = sent()
    assert hashlib.sha256(b"weights v1").hexdigest() in text
    remote.body = b"weights v2"
    text, second = sent()
    assert hashlib.sha256(b"weights v2").hexdigest() in text
    assert first and second and first.isdisjoint(second), "new bytes, a new revision"

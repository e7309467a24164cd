"""Artifact-aware revisions: new weights are a new revision, the same weights the same one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kaip.errors import ArtifactError, UntrustedArtifactError
from kaip.local.controller.pinning import pin
from kaip.plan import revision_id
from kaip.serving.artifacts import content_digest, resolve
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

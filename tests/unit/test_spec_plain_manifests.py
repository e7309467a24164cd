"""Plain Kubernetes manifests beside kaip resources are skipped with a located note, not refused
(issue 13 #8); a kaip kind under another apiVersion, or a document the apiserver returned, is
still an error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kaip.errors import SpecError
from kaip.spec import load_paths
from kaip.spec.loader import load_document

pytestmark = pytest.mark.unit

MODEL = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: m}
spec:
  owner: t
  artifact: {uri: model.onnx, format: onnx}
"""
PLAIN = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: extra}
data: {a: b}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sidecar}
"""


def test_plain_manifests_are_left_out_with_a_located_note(tmp_path: Path) -> None:
    (tmp_path / "model.yaml").write_text(MODEL)
    (tmp_path / "extra.yaml").write_text(PLAIN)
    specs = load_paths([tmp_path])
    assert [d.resource.metadata.name for d in specs.documents] == ["m"]
    notes = [(Path(n.file).name, n.line, n.message) for n in specs.skipped]
    assert notes == [
        ("extra.yaml", 1, "ConfigMap extra (v1) is a plain Kubernetes manifest, not a kaip "
         "resource: skipped"),
        ("extra.yaml", 6, "Deployment sidecar (apps/v1) is a plain Kubernetes manifest, not a "
         "kaip resource: skipped"),
    ]  # fmt: skip
    validated = subprocess.run(
        [sys.executable, "-m", "kaip.cli", "validate", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert validated.returncode == 0, validated.stderr
    assert "extra.yaml:6:1: Deployment sidecar (apps/v1) is a plain" in validated.stderr
    rendered = subprocess.run(
        [sys.executable, "-m", "kaip.cli", "render", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    assert "ConfigMap" in rendered.stdout  # the Model's own spec ConfigMap ...
    assert "name: extra" not in rendered.stdout and "sidecar" not in rendered.stdout  # ... only
    assert "note: " in rendered.stderr and "ConfigMap extra (v1) is a plain" in rendered.stderr


@pytest.mark.parametrize(
    "text",
    [
        MODEL.replace("kaip.dev/v1alpha1", "v1"),  # a kaip kind: the apiVersion is wrong
        MODEL.replace("kaip.dev/v1alpha1", "kaip.dev/v1"),
        PLAIN.replace("apiVersion: v1\n", "", 1),  # no apiVersion: not a manifest either
    ],
)
def test_what_is_not_a_plain_manifest_is_still_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "spec.yaml").write_text(text)
    with pytest.raises(SpecError):
        load_paths([tmp_path])


def test_a_document_from_the_apiserver_is_never_skipped() -> None:
    with pytest.raises(SpecError, match="unknown apiVersion"):
        load_document({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})

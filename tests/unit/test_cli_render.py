"""``kaip render`` as a user runs it: stdout, --out directories, and errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

EXAMPLES = Path(__file__).parents[2] / "examples"


def _kaip(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaip.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_render_prints_multi_document_yaml(tmp_path: Path) -> None:
    result = _kaip("render", EXAMPLES / "quickstart", "--namespace", "demo")
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "HTTPRoute"}
    assert {o["metadata"]["namespace"] for o in objects} == {"demo"}

    out = tmp_path / "manifests"
    written = _kaip("render", EXAMPLES / "quickstart", "--namespace", "demo", "--out", out)
    assert written.returncode == 0, written.stderr
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    files = kustomization["resources"]
    assert len(files) == len(objects)
    assert [yaml.safe_load((out / f).read_text()) for f in files] == objects
    # Rendering again replaces kaip's own output; a foreign file makes it refuse.
    assert _kaip("render", EXAMPLES / "quickstart", "--out", out).returncode == 0
    (out / "mine.txt").write_text("keep me")
    refused = _kaip("render", EXAMPLES / "quickstart", "--out", out)
    assert refused.returncode == 2
    assert "mine.txt" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_bad_spec_exits_2_with_located_problems(tmp_path: Path) -> None:
    spec = tmp_path / "kaip.yaml"
    spec.write_text(
        "apiVersion: kaip.dev/v1alpha1\nkind: Model\nmetadata: {name: m}\n"
        "spec: {owner: a, artifact: {uri: m.onnx, format: onnx}, scaling: {maxReplica: 2}}\n"
    )
    result = _kaip("render", spec)
    assert result.returncode == 2
    assert f"{spec}:4:" in result.stderr
    assert "maxReplicas" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr

"""`kaip gitops commit` against a real git repository in a temporary directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

SPEC = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {{name: digits, namespace: ml}}
spec:
  owner: ml
  artifact: {{uri: https://models.example.com/digits.onnx, format: onnx}}
  serve: {{batching: {{maxBatchSize: {batch}}}}}
"""
APP = """\
---
apiVersion: kaip.dev/v1alpha1
kind: App
metadata: {name: ui, namespace: ml}
spec: {owner: web, image: ghcr.io/example/ui:1}
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def kaip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaip.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "deploy"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "CI")
    (repo / "README.md").write_text("cluster config\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "--quiet", "-m", "init")
    return repo


def test_one_commit_per_change_with_a_message_naming_it(repo: Path, tmp_path: Path) -> None:
    spec = tmp_path / "serving.yaml"
    spec.write_text(SPEC.format(batch=64))

    first = kaip("gitops", "commit", str(spec), "--repo", str(repo), "--dir", "apps/serving")
    assert first.returncode == 0, first.stderr
    subject = git(repo, "log", "-1", "--format=%s")
    assert subject == "kaip: add Model digits\n"
    files = git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert "apps/serving/kustomization.yaml" in files
    kustomization = yaml.safe_load((repo / "apps/serving/kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in (repo / "apps/serving").iterdir()} - {"kustomization.yaml"}

    again = kaip("gitops", "commit", str(spec), "--repo", str(repo), "--dir", "apps/serving")
    assert again.returncode == 0 and "nothing to commit" in again.stdout
    assert git(repo, "rev-list", "--count", "HEAD") == "2\n"

    spec.write_text(SPEC.format(batch=8) + APP)
    changed = kaip("gitops", "commit", str(spec), "--repo", str(repo), "--dir", "apps/serving")
    assert changed.returncode == 0, changed.stderr
    message = git(repo, "log", "-1", "--format=%B")
    subject, body = message.split("\n", 1)
    assert subject.startswith("kaip: update Model digits to revision ")
    assert subject.endswith("; add App ui")
    assert "removed  apps/serving/deployment-digits-" in body
    assert git(repo, "rev-list", "--count", "HEAD") == "3\n"
    assert git(repo, "status", "--porcelain") == ""
    old = [p for p in (repo / "apps/serving").iterdir() if p.name.startswith("deployment-digits")]
    assert len(old) == 1, "the old revision's Deployment left the directory"


def test_the_directory_builds_with_kustomize_as_argo_cd_and_flux_do(
    repo: Path, tmp_path: Path, kubectl: Path
) -> None:
    spec = tmp_path / "serving.yaml"
    spec.write_text(SPEC.format(batch=64) + APP)
    done = kaip("gitops", "commit", str(spec), "--repo", str(repo), "--dir", "apps/serving")
    assert done.returncode == 0, done.stderr
    built = subprocess.run(
        [str(kubectl), "kustomize", str(repo / "apps/serving")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    objects = [d for d in yaml.safe_load_all(built.stdout) if d]
    rendered = kaip("render", str(spec))
    assert rendered.returncode == 0, rendered.stderr
    expected = [d for d in yaml.safe_load_all(rendered.stdout) if d]

    def key(obj: dict[str, Any]) -> tuple[str, str]:
        return (obj["kind"], obj["metadata"]["name"])

    assert sorted(map(key, objects)) == sorted(map(key, expected))
    assert sorted(objects, key=key) == sorted(expected, key=key)


def test_files_kaip_did_not_write_are_left_alone(repo: Path, tmp_path: Path) -> None:
    spec = tmp_path / "serving.yaml"
    spec.write_text(SPEC.format(batch=64))
    (repo / "serving").mkdir()
    (repo / "serving" / "notes.yaml").write_text("owner: platform\n")
    done = kaip("gitops", "commit", str(spec), "--repo", str(repo))
    assert done.returncode == 0, done.stderr
    assert (repo / "serving" / "notes.yaml").read_text() == "owner: platform\n"
    assert "serving/notes.yaml" not in git(repo, "show", "--name-only", "--format=", "HEAD")


def test_a_directory_that_is_not_a_repository_is_one_clear_error(tmp_path: Path) -> None:
    spec = tmp_path / "serving.yaml"
    spec.write_text(SPEC.format(batch=64))
    plain = tmp_path / "plain"
    plain.mkdir()
    done = kaip("gitops", "commit", str(spec), "--repo", str(plain))
    assert done.returncode == 2
    assert "is not a git repository" in done.stderr and "Traceback" not in done.stderr

"""The Dockerfiles agree with what kaip renders and installs.

They are built for real by ``make images`` (tools/images/build.sh, buildah) and run on a real
kubelet in tests/e2e_node; this checks, without building, what a change to pyproject.toml or
the renderer could silently break. (tests/unit/test_lock.py checks every install takes its
versions from requirements.lock.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from kaip.render.kube.artifacts import ARTIFACT_DIR
from kaip.render.kube.pods import RUN_AS_USER

ROOT = Path(__file__).parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
OPERATOR = (ROOT / "Dockerfile.operator").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
IMAGES = {"Dockerfile": {"sklearn", "onnx", "s3"}, "Dockerfile.operator": {"kube"}}


def _instructions(text: str, name: str) -> list[str]:
    joined = text.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def test_runs_the_model_server_as_the_rendered_non_root_user() -> None:
    assert _instructions(DOCKERFILE, "USER")[-1] == f"{RUN_AS_USER}:{RUN_AS_USER}"
    assert f"--uid {RUN_AS_USER}" in DOCKERFILE
    entrypoint = json.loads(_instructions(DOCKERFILE, "ENTRYPOINT")[-1])
    assert entrypoint == ["python", "-m", "kaip.serving"]
    assert f"mkdir -p {ARTIFACT_DIR}" in DOCKERFILE


def test_the_operator_image_runs_kaip_operator_as_the_same_user() -> None:
    assert _instructions(OPERATOR, "USER")[-1] == f"{RUN_AS_USER}:{RUN_AS_USER}"
    assert json.loads(_instructions(OPERATOR, "ENTRYPOINT")[-1]) == ["kaip", "operator"]


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_builds_on_a_chosen_base_defaulting_to_the_official_python_image(name: str) -> None:
    text = (ROOT / name).read_text()
    assert _instructions(text, "ARG")[0] == "BASE=python:3.11-slim"
    stages: list[str] = []
    for line in _instructions(text, "FROM"):
        image, *alias = line.split()
        assert image == "${BASE}" or image in stages, f"FROM {image}: not BASE nor a stage"
        stages += alias[1:]
    assert line == "${BASE}", "the final image starts from BASE, not from a build stage"


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_installs_the_extras_it_names_dependencies_first(name: str) -> None:
    text = (ROOT / name).read_text()
    extras = IMAGES[name]
    assert extras <= set(PYPROJECT["optional-dependencies"])
    (deps,) = re.findall(r"python requirements\.py ([a-z0-9 ]+) >requirements\.txt", text)
    assert set(deps.split()) == extras
    install = r'pip install -c requirements.lock --no-deps --root /opt/app "\.\[([a-z0-9,]+)\]"'
    (wanted,) = re.findall(install, text)
    assert set(wanted.split(",")) == extras
    assert text.index("requirements.txt") < text.index("COPY src"), "dependencies first"


def test_the_deps_stage_asks_for_what_pyproject_declares(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    script = ROOT / "tools" / "images" / "requirements.py"
    out = subprocess.run(
        [sys.executable, str(script), "sklearn", "onnx"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    wanted = [Requirement(line) for line in out.stdout.splitlines()]
    expected = PYPROJECT["dependencies"] + [
        r for e in ("sklearn", "onnx") for r in PYPROJECT["optional-dependencies"][e]
    ]
    assert [str(r) for r in wanted] == [str(Requirement(r)) for r in expected]

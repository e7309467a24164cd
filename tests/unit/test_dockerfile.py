"""The Dockerfile (which cannot be built here) agrees with what kaip renders and installs."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from kaip.render.kube.artifacts import ARTIFACT_DIR
from kaip.render.kube.pods import RUN_AS_USER

ROOT = Path(__file__).parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def test_runs_the_model_server_as_the_rendered_non_root_user() -> None:
    assert _instructions("USER")[-1] == f"{RUN_AS_USER}:{RUN_AS_USER}"
    assert f"--uid {RUN_AS_USER}" in DOCKERFILE
    assert json.loads(_instructions("ENTRYPOINT")[-1]) == ["python", "-m", "kaip.serving"]
    assert all(base.startswith("python:3.11-slim") for base in _instructions("FROM"))
    assert f"mkdir -p {ARTIFACT_DIR}" in DOCKERFILE


def test_installs_extras_that_exist() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    (wanted,) = re.findall(r'pip install "\.\[([a-z,]+)\]"', DOCKERFILE)
    assert set(wanted.split(",")) == {"sklearn", "onnx"}
    assert set(wanted.split(",")) <= set(extras)

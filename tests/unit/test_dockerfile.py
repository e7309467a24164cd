"""The Dockerfiles agree with what kaip renders and installs.

They are built for real by ``make images`` (tools/images/build.sh, buildah) and run on a real
kubelet in tests/e2e_node; this checks, without building, what a change to pyproject.toml or
the renderer could silently break. (tests/unit/test_lock.py checks every install takes its
versions from requirements.lock.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kaip.render.kube.artifacts import ARTIFACT_DIR
from kaip.render.kube.pods import RUN_AS_USER

ROOT = Path(__file__).parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
OPERATOR = (ROOT / "Dockerfile.operator").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
IMAGES = {"Dockerfile": {"sklearn", "onnx", "s3"}, "Dockerfile.operator": {"kube", "mlflow", "s3"}}


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


def _installed_by(extras: set[str]) -> set[str]:
    """The distributions an image's deps stage installs: what requirements.py asks for
    ``extras``, and everything those require in turn (as installed here, at the lock's pins)."""
    script = ROOT / "tools" / "images" / "requirements.py"
    out = subprocess.run(
        [sys.executable, str(script), *sorted(extras)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    todo = [Requirement(line) for line in out.stdout.splitlines()]
    names: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        wanted = todo.pop()
        key = (canonicalize_name(wanted.name), frozenset(wanted.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        try:
            requires = metadata.distribution(wanted.name).requires or []
        except metadata.PackageNotFoundError:
            continue  # not for this platform (a marker left it out of the lock's set)
        for text in requires:
            needed = Requirement(text)
            extra_names = wanted.extras or {""}
            if needed.marker is None or any(
                needed.marker.evaluate({"extra": e}) for e in extra_names
            ):
                todo.append(needed)
    return names


def _site_packages(distributions: set[str], into: Path) -> Path:
    """A site-packages holding only ``distributions``: each file they installed here, linked."""
    for dist in metadata.distributions():
        if canonicalize_name(dist.metadata["Name"]) not in distributions:
            continue
        for file in dist.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # scripts in bin/, and bytecode the interpreter makes again
            target = into / file
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(Path(str(dist.locate_file(file))).resolve())
    return into


# What the operator runs once a TrainingJob's Job succeeded (kaip.kube.operator.versions): it
# opens its MLflow registry and asks it for the version, reads the job's s3:// output and keeps
# a copy of it. Here against servers that are not there (port 9): every call must fail the way
# an unreachable server fails (KaipError, not "pip install ..."), never for a missing module.
OPERATOR_ON_SUCCESS = """
import importlib.util, json, sys, tempfile
from pathlib import Path

sys.path[:0] = sys.argv[1:]  # the image's site-packages and kaip's source, nothing else

from kaip.errors import KaipError
from kaip.kube.operator import run  # noqa: F401  (kaip operator's own imports)
from kaip.kube.operator.versions import ClusterVersions
from kaip.registry.outputs import keep, local_copy
from kaip.settings import load_settings

failures = []

def check(what, call):
    try:
        call()
    except KaipError as exc:
        if "pip install" in exc.message:
            failures.append(f"{what}: {exc.message}")
    except ImportError as exc:
        failures.append(f"{what}: {exc!r}")

scratch = Path(tempfile.mkdtemp())
(scratch / "model").write_bytes(b"bytes")
versions = ClusterVersions(load_settings())
check("open the MLflow registry", lambda: versions.registry("the test"))
check("ask it for a version", lambda: versions.registry("the test").resolve("m", "latest"))
check("read the job's output", lambda: local_copy("s3://bucket/out/model", scratch))
check("keep its bytes", lambda: keep(scratch / "model", "s3://bucket/out/model", "0" * 64))
absent = [m for m in ("sklearn", "onnxruntime", "kopf") if importlib.util.find_spec(m) is None]
print(json.dumps({"failures": failures, "absent": absent}))
"""


def test_the_operator_image_carries_what_the_operator_runs_when_a_job_succeeds(
    tmp_path: Path,
) -> None:
    """With only what Dockerfile.operator installs (its extras and all they require, at the
    versions installed here), the operator's registration path gets as far as the network.
    With the image at kaip[kube] only, MLflow's client and boto3 are missing and this fails."""
    (deps,) = re.findall(r"python requirements\.py ([a-z0-9 ]+) >requirements\.txt", OPERATOR)
    image = _site_packages(_installed_by(set(deps.split())), tmp_path / "site-packages")
    env = {
        **os.environ,
        "KAIP_REGISTRY__BACKEND": "mlflow",
        "KAIP_REGISTRY__MLFLOW_URI": "http://127.0.0.1:9",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    out = subprocess.run(
        [sys.executable, "-S", "-c", OPERATOR_ON_SUCCESS, str(image), str(ROOT / "src")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    said = json.loads(out.stdout.splitlines()[-1])
    assert said["failures"] == [], said
    assert said["absent"] == ["sklearn", "onnxruntime"], "the model server's runtimes stay out"

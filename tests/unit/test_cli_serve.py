"""``kaip serve PATH`` serves the only Model there without ``--model`` (issue 13 #8)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kaip.cli.serve import only_model

pytestmark = pytest.mark.unit


def model(name: str) -> str:
    return f"""\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {{name: {name}}}
spec:
  owner: t
  artifact: {{uri: model.onnx, format: onnx}}
"""


APP = """\
apiVersion: kaip.dev/v1alpha1
kind: App
metadata: {name: web}
spec: {owner: t, command: [python, app.py]}
"""


def test_the_only_model_beside_an_app_is_picked(tmp_path: Path) -> None:
    (tmp_path / "model.yaml").write_text(model("digits"))
    (tmp_path / "app.yaml").write_text(APP)
    assert only_model(tmp_path) == "digits"


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({"a.yaml": model("a"), "b.yaml": model("b")}, "has 2 Models (a, b): name the one"),
        ({"app.yaml": APP}, "no Model in"),
    ],
)
def test_none_or_several_models_are_one_message_and_exit_2(
    tmp_path: Path, files: dict[str, str], words: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    served = subprocess.run(
        [sys.executable, "-m", "kaip.cli", "serve", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert served.returncode == 2, served.stderr
    assert words in served.stderr and "Traceback" not in served.stderr

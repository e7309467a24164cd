"""The lock files are current with what they pin from, and every install goes through them.

``tools/lock.py --check`` compares the hash each lock's header records with pyproject.toml's
dependency tables (or a bench peer's requirements.txt) now; no network."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parents[2]


def lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kaip_lock_tool", ROOT / "tools" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while building the class
    spec.loader.exec_module(module)
    return module


def test_every_lock_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "lock.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_a_changed_dependency_makes_the_lock_stale(tmp_path: Path) -> None:
    tool = lock_module()
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(ROOT / "requirements.lock", tmp_path / "requirements.lock")
    lock = tool.Lock(tmp_path / "requirements.lock", tmp_path / "pyproject.toml")
    assert lock.recorded() == lock.digest()
    pyproject = tmp_path / "pyproject.toml"
    # Formatting and unrelated tables do not count; a dependency does.
    pyproject.write_text(pyproject.read_text().replace("line-length = 100", "line-length = 99"))
    assert lock.recorded() == lock.digest()
    pyproject.write_text(pyproject.read_text().replace('"pyyaml>=6.0"', '"pyyaml>=6.0.1"'))
    assert lock.recorded() != lock.digest()


@pytest.mark.parametrize(
    "path", ["Makefile", "Dockerfile", "Dockerfile.operator", "bench/serving/setup.sh"]
)
def test_each_install_takes_its_versions_from_a_lock(path: str) -> None:
    text = (ROOT / path).read_text()
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs, f"{path} installs nothing any more: update this test"
    unpinned = [line for line in installs if " -c " not in line]
    assert not unpinned, f"{path}: pip install without a lock (-c ...): {unpinned}"


def test_pyproject_keeps_ranges_open() -> None:
    tool = lock_module()
    text = (ROOT / "pyproject.toml").read_text()
    assert tool.HASH_PREFIX in (ROOT / "requirements.lock").read_text()
    pins = [line.strip() for line in text.splitlines() if "==" in line and line.strip()[0] == '"']
    assert not pins, f"pin versions in requirements.lock (make lock), not pyproject.toml: {pins}"

"""The suite's own rules (tests/conftest.py), run by a real pytest on a throwaway tree: every test
gets its tier's marker by directory, a test outside the tier directories stops collection, and a
skip for any reason but a missing optional extra (or KAIP_SKIP_KUBE=1) fails the session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def run_suite(tmp_path: Path, files: dict[str, str], *args: str, **env: str) -> tuple[int, str]:
    """pytest over ``files`` (paths under tests/) with this repository's conftest and settings."""
    (tmp_path / "tests").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "tests" / "conftest.py")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for name, text in files.items():
        path = tmp_path / "tests" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    environ = {k: v for k, v in os.environ.items() if k != "KAIP_SKIP_KUBE"} | env
    environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # loading hypothesis, schemathesis: seconds
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "pytest_timeout", "-q",
         *args],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


PASSES = "def test_it():\n    pass\n"


@pytest.mark.parametrize(
    ("select", "passed"),
    [("unit", 2), ("contract", 1), ("e2e_local", 1), ("not e2e_kube and not e2e_node", 4)],
)
def test_markers_select_the_tiers(tmp_path: Path, select: str, passed: int) -> None:
    files = {f"{d}/test_{d}.py": PASSES for d in ("unit", "golden", "contract", "e2e_local")}
    files["e2e_kube/test_kube.py"] = PASSES
    code, out = run_suite(tmp_path, files, "-m", select)
    assert code == 0, out
    assert f"{passed} passed" in out, out


def test_a_test_outside_the_tier_directories_stops_collection(tmp_path: Path) -> None:
    code, out = run_suite(tmp_path, {"unit/test_ok.py": PASSES, "misc/test_stray.py": PASSES})
    assert code == pytest.ExitCode.USAGE_ERROR, out
    assert "outside the tier directories" in out and "misc/test_stray.py" in out, out
    code, out = run_suite(tmp_path / "top", {"test_top.py": PASSES})
    assert code == pytest.ExitCode.USAGE_ERROR, out


def test_a_skip_for_a_missing_tool_fails_the_session(tmp_path: Path) -> None:
    skips = "import pytest\n\ndef test_it():\n    pytest.skip('helm is not built')\n"
    code, out = run_suite(tmp_path, {"unit/test_ok.py": PASSES, "unit/test_skips.py": skips})
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert "skip guard" in out and "helm is not built" in out, out


def test_side_by_side_the_skip_guard_still_fails_the_session(tmp_path: Path) -> None:
    """make test's second phase: a worker's skip reaches the guard in the controlling process."""
    skips = "import pytest\n\ndef test_it():\n    pytest.skip('helm is not built')\n"
    files = {"unit/test_ok.py": PASSES, "unit/test_skips.py": skips}
    code, out = run_suite(tmp_path, files, "-p", "xdist", "-n", "2")
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert "skip guard" in out and "helm is not built" in out, out


def test_side_by_side_a_file_stays_on_one_worker_and_a_kube_tier_on_one(tmp_path: Path) -> None:
    """One worker runs a file whole, and one each Kubernetes tier and the model servers' tests;
    each test says its worker."""
    says = (
        "import os\n\n"
        "def test_{n}():\n"
        "    here = __file__.rsplit('/tests/', 1)[1]\n"
        "    with open(os.environ['WORKERS_LOG'], 'a') as log:\n"
        "        print(here, os.environ['PYTEST_XDIST_WORKER'], file=log)\n"
    )
    files = {
        f"{tier}/test_{tier.replace('/', '_')}_{i}.py": "".join(says.format(n=n) for n in range(4))
        for tier in ("unit", "e2e_node", "e2e_kube", "contract/model_server")
        for i in range(3)
    }
    log = tmp_path / "workers.log"
    args = ("-p", "xdist", "-n", "3")
    code, out = run_suite(tmp_path, files, *args, WORKERS_LOG=str(log))
    assert code == 0, out
    workers: dict[str, set[str]] = {}
    for line in log.read_text().splitlines():
        path, worker = line.split()
        workers.setdefault(path, set()).add(worker)
    assert len(workers) == 12 and all(len(w) == 1 for w in workers.values()), workers
    for tier in ("e2e_node/", "e2e_kube/", "contract/model_server/"):
        assert len({w for path, ws in workers.items() if path.startswith(tier) for w in ws}) == 1


TIER_CONFTEST = """\
import os

import pytest


@pytest.fixture(scope="session")
def plane():
    yield "up"
    with open(os.environ["STOPS_LOG"], "a") as log:
        print("stopped", file=log)
"""
USES_PLANE = "def test_{n}(plane):\n    assert plane == 'up'\n"
AFTER_THE_TIER = (
    "import os\n\n"
    "def test_after():\n"
    "    with open(os.environ['STOPS_LOG']) as log:\n"
    "        assert log.read() == 'stopped\\n'\n"
)


@pytest.mark.parametrize("args", [(), ("-p", "xdist", "-n", "1")], ids=["alone", "worker"])
def test_a_kube_tiers_session_fixture_stops_after_the_tiers_last_test(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """Not at the end of the session: the unit test after the tier sees it stopped, once."""
    files = {
        "e2e_kube/conftest.py": TIER_CONFTEST,
        "e2e_kube/test_a.py": USES_PLANE.format(n=1) + USES_PLANE.format(n=2),
        "e2e_kube/test_b.py": USES_PLANE.format(n=3),
        "unit/test_after.py": AFTER_THE_TIER,
    }
    log = tmp_path / "stops.log"
    code, out = run_suite(tmp_path, files, *args, STOPS_LOG=str(log))
    assert code == 0, out
    assert "4 passed" in out, out
    assert log.read_text() == "stopped\n"


def test_latency_judging_tests_are_marked_to_run_alone(tmp_path: Path) -> None:
    files = {"contract/bounds/test_b.py": PASSES, "contract/test_c.py": PASSES}
    code, out = run_suite(tmp_path, files, "-m", "quiet_machine", "--collect-only")
    assert code == 0, out
    assert "contract/bounds/test_b.py::test_it" in out and "test_c.py" not in out, out


def test_a_missing_optional_extra_may_skip(tmp_path: Path) -> None:
    skips = (
        "import pytest\n\ndef test_it():\n"
        "    pytest.importorskip('no_such_module_kaip', reason="
        "'optional extra kaip[torch] is not installed')\n"
    )
    code, out = run_suite(tmp_path, {"unit/test_skips.py": skips}, "-rs")
    assert code == 0, out
    assert "1 skipped" in out and "optional extra kaip[torch]" in out, out


def test_kaip_skip_kube_skips_the_kube_tiers_and_says_so(tmp_path: Path) -> None:
    files = {
        "unit/test_ok.py": PASSES,
        "e2e_kube/test_kube.py": PASSES,
        "e2e_node/test_node.py": PASSES,
    }
    code, out = run_suite(tmp_path, files, KAIP_SKIP_KUBE="1")
    assert code == 0, out
    assert "1 passed, 2 skipped" in out, out
    assert "2 test(s) skipped on purpose by KAIP_SKIP_KUBE=1" in out, out
    code, out = run_suite(tmp_path / "unset", files)
    assert code == 0 and "3 passed" in out, out


def test_a_kube_skip_without_kaip_skip_kube_fails_the_session(tmp_path: Path) -> None:
    skips = "import pytest\n\ndef test_it():\n    pytest.skip('KAIP_SKIP_KUBE=1: not built')\n"
    code, out = run_suite(tmp_path, {"unit/test_skips.py": skips})
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert "skip guard" in out, out

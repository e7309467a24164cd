"""tools/setup.sh, the component runner behind `make setup`, on components made up here: a ready
component costs its check only, a missing one is installed and checked again, a failure stops
the run with the component named, and KAIP_SKIP_KUBE=1 leaves out the kube components."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]

COMPONENTS = """\
component present "already there"
present_ready() { true; }
present_install() { echo "must not run" >&2; exit 1; }

component missing "installed here"
missing_ready() { [[ -f "$MARK" ]]; }
missing_install() { echo installing; touch "$MARK"; }

component cluster "a kube-tier component" kube
cluster_ready() { [[ -f "$MARK.cluster" ]]; }
cluster_install() { echo building the cluster; touch "$MARK.cluster"; }
"""

BROKEN = """\
component broken "fails halfway"
broken_ready() { false; }
broken_install() { echo first step; false; echo second step; }
component later "after the broken one"
later_ready() { echo "later ran" >&2; true; }
"""

NOT_READY = """\
component liar "installs nothing"
liar_ready() { false; }
liar_install() { echo done, supposedly; }
"""


def run_setup(tmp_path: Path, components: str, *args: str, **env: str) -> tuple[int, str]:
    tools = tmp_path / "tools"
    (tools / "setup.d").mkdir(parents=True)
    shutil.copy(ROOT / "tools" / "setup.sh", tools / "setup.sh")
    (tools / "setup.d" / "10-test.sh").write_text(components)
    environ = {k: v for k, v in os.environ.items() if k != "KAIP_SKIP_KUBE"}
    environ |= {"MARK": str(tmp_path / "mark"), **env}
    done = subprocess.run(
        ["bash", str(tools / "setup.sh"), *args],
        capture_output=True, text=True, timeout=60, env=environ,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def test_ready_components_are_checked_and_missing_ones_installed(tmp_path: Path) -> None:
    code, out = run_setup(tmp_path, COMPONENTS)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("setup: present ready (")
    assert "setup: missing installing: installed here" in lines
    assert "    installing" in lines
    assert any(line.startswith("setup: missing done in ") for line in lines), out
    assert "    building the cluster" in lines
    assert lines[-1].startswith("setup: all ready in ")
    assert "must not run" not in out
    code, out = run_setup(tmp_path / "again", COMPONENTS, "missing", MARK=str(tmp_path / "mark"))
    assert code == 0 and "setup: missing ready (" in out and "installing" not in out, out


def test_kaip_skip_kube_leaves_out_kube_components_and_says_so(tmp_path: Path) -> None:
    code, out = run_setup(tmp_path, COMPONENTS, KAIP_SKIP_KUBE="1")
    assert code == 0, out
    assert "setup: cluster skipped: KAIP_SKIP_KUBE=1" in out
    assert "building the cluster" not in out


def test_a_failing_install_stops_the_run_naming_the_component(tmp_path: Path) -> None:
    code, out = run_setup(tmp_path, BROKEN)
    assert code == 1, out
    assert "    first step" in out and "second step" not in out
    assert "setup: broken FAILED after" in out
    assert "later ran" not in out


def test_an_install_that_leaves_it_not_ready_fails(tmp_path: Path) -> None:
    code, out = run_setup(tmp_path, NOT_READY)
    assert code == 1, out
    assert "setup: liar FAILED: installed in" in out and "liar_ready still says no" in out


def test_lists_components_and_refuses_unknown_ones(tmp_path: Path) -> None:
    code, out = run_setup(tmp_path, COMPONENTS, "--list")
    assert code == 0, out
    assert out.splitlines()[2].split() == ["cluster", "a", "kube-tier", "component", "[kube]"]
    code, out = run_setup(tmp_path / "again", COMPONENTS, "nope")
    assert code == 2 and "no component 'nope'" in out, out


def test_the_projects_components_are_declared() -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "tools" / "setup.sh"), "--list"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert {"lua", "helm", "k8s", "prometheus"} <= set(names)

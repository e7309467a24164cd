"""What holds for the whole suite: tier markers by directory, the skip guard, and the built tools.

Tiers. Every test gets its tier's marker from the directory it lives in (:data:`TIERS`), so none
can be left unmarked, and a test collected anywhere else stops the run at collection: add its
directory to :data:`TIERS` (and to CONTRIBUTING.md) rather than leaving it without a tier.
``pytest -m unit``, ``-m "not e2e_kube and not e2e_node"`` and so on select by tier.

Skip guard. ``make test`` installs every tool a test needs (``tools/setup.sh``), so a skip means
something is missing that should not be. The session fails when any test skips, except

* for an optional extra that is not installed: the reason starts with
  ``optional extra kaip[NAME] is not installed`` (``pytest.importorskip(module, reason=...)``);
* with ``KAIP_SKIP_KUBE=1`` set, the Kubernetes tiers (and tests needing their binaries), which
  are then skipped on purpose and counted in the summary.

Built tools. The ``helm`` and ``kubectl`` fixtures give the paths ``tools/setup.sh`` built them
to (``tools/helm/build.sh --check``, ``tools/k8s/build.sh --check``) and fail with the command to
run when they are missing. This module never builds or installs anything itself.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
ROOT = TESTS.parent

TIERS = {
    "unit": "unit",
    "golden": "unit",
    "spec_corpus": "unit",
    "contract": "contract",
    "e2e_local": "e2e_local",
    "e2e_kube": "e2e_kube",
    "e2e_node": "e2e_node",
}
"""Top-level directory under tests/ -> tier marker (registered in pyproject.toml)."""

KUBE_TIERS = frozenset({"e2e_kube", "e2e_node"})
SKIP_KUBE = "KAIP_SKIP_KUBE=1"
EXTRA_SKIP = re.compile(r"optional extra kaip\[[a-z0-9_-]+\] is not installed")


def skip_kube() -> bool:
    return os.environ.get("KAIP_SKIP_KUBE") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    strays: list[str] = []
    for item in items:
        parts = Path(str(item.path)).relative_to(TESTS).parts
        tier = TIERS.get(parts[0]) if len(parts) > 1 else None
        if tier is None:
            strays.append(item.nodeid)
            continue
        item.add_marker(getattr(pytest.mark, tier))
        if tier in KUBE_TIERS and skip_kube():
            item.add_marker(pytest.mark.skip(reason=f"{SKIP_KUBE}: the {tier} tier is skipped"))
    if strays:
        known = ", ".join(f"tests/{d}/" for d in TIERS)
        raise pytest.UsageError(
            f"{len(strays)} test(s) outside the tier directories ({known}), first: {strays[0]}. "
            "Move them into one, or add their directory to TIERS in tests/conftest.py."
        )


_refused: list[tuple[str, str]] = []
_kube_skipped: list[str] = []


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    if EXTRA_SKIP.match(reason):
        return
    if skip_kube() and SKIP_KUBE in reason:
        _kube_skipped.append(report.nodeid)
        return
    _refused.append((report.nodeid, reason))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if _refused and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _kube_skipped:
        terminalreporter.write_line(
            f"{len(_kube_skipped)} test(s) skipped on purpose by {SKIP_KUBE}: the Kubernetes "
            "tiers and the tests needing their binaries (unset it to run them)",
            yellow=True,
        )
    if _refused:
        terminalreporter.section("skip guard", red=True)
        for nodeid, reason in _refused:
            terminalreporter.write_line(f"{nodeid}: {reason}")
        terminalreporter.write_line(
            f"{len(_refused)} test(s) skipped for a reason other than a missing optional extra: "
            "the session fails. `make setup` installs what tests need; see tests/conftest.py.",
            red=True,
        )


def built_tool(script: str, name: str) -> tuple[Path | None, str]:
    """Ask ``script --check`` where it puts ``name``: (path or None when missing, the fix)."""
    done = subprocess.run(
        [str(ROOT / script), "--check"], capture_output=True, text=True, timeout=60, check=False
    )
    where = Path(done.stdout.strip())
    path = where if where.name == name else where / name
    found = path if os.access(path, os.X_OK) else None
    return found, f"{name} is not built ({path}): run `make setup` (or {script})"


@pytest.fixture(scope="session")
def helm() -> Path:
    path, fix = built_tool("tools/helm/build.sh", "helm")
    if path is None:
        pytest.fail(fix, pytrace=False)
    return path


@pytest.fixture(scope="session")
def kubectl() -> Path:
    path, fix = built_tool("tools/k8s/build.sh", "kubectl")
    if path is None:
        if skip_kube():
            pytest.skip(f"{SKIP_KUBE}: {fix}")
        pytest.fail(f"{fix}, or set {SKIP_KUBE} to skip the tests that need it", pytrace=False)
    return path

"""What holds for the whole suite: tier markers by directory, the skip guard, and the built tools.

Tiers. Every test gets its tier's marker from the directory it lives in (:data:`TIERS`), so none
can be left unmarked, and a test collected anywhere else stops the run at collection: add its
directory to :data:`TIERS` (and to CONTRIBUTING.md) rather than leaving it without a tier.
``pytest -m unit``, ``-m "not e2e_kube and not e2e_node"`` and so on select by tier.

Side by side. ``make test`` runs the tests that judge latency first and alone (marker
``quiet_machine``: the bounds harness asserts p99 only on a quiet machine), then the rest on
pytest-xdist workers, one file per worker at a time (:func:`work_unit`), the longest tiers first.

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

import functools
import os
import re
import subprocess
from collections.abc import Generator
from pathlib import Path
from typing import Any

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

FIRST = ("e2e_node", "e2e_kube", "e2e_local", "contract")
"""Side by side (``make test``: pytest-xdist workers), the longest work starts first: the real
node and the control plane's tier, each on a worker of its own, then :data:`LONGEST_FILES`, then
the local platform's other files, then the rest in collection order."""

LONGEST_FILES = (
    "e2e_local/test_observability.py",
    "e2e_local/test_training.py",
    "e2e_local/test_delivery.py",
    "e2e_local/test_training_mlflow.py",
    "e2e_local/test_local_platform.py",
    "e2e_local/test_controller_resilience.py",
    "e2e_local/test_genai_gates.py",
    "e2e_local/test_delivery_history_cli.py",
    "spec_corpus/test_corpus.py",
    "unit/test_dockerfile.py",
    "unit/test_spec_properties.py",
)
"""After the Kubernetes tiers, the files that took longest on one worker in ``make test`` (its
``--durations``, 2026-12-01: 50 s to 3 min each; the last two, 25-30 s, are the longest of the
unit tier, which comes last), longest first, before every other file: a worker that starts one
of them late is what the others would wait for at the end. A scheduling hint only; a file
missing here merely starts in its tier's turn."""

QUIET_DIRS = frozenset({("contract", "bounds")})
"""Directories of tests that judge latency: marked ``quiet_machine`` (elsewhere, mark by hand)."""

WHOLE_DIRS = frozenset({"e2e_node", "e2e_kube", "contract/model_server"})
"""Directories (under tests/) whose tests run on one worker: the real node is one per host, and
a control plane (etcd, apiserver, controller-manager, scheduler, kwok) costs CPU while idle, so
one worker's session fixtures start it once; the model servers' session fixtures (the quickstart
trained, three ``kaip serve``) likewise, instead of once on every worker that runs one of the
files. Those fixtures stop after the directory's last test (:class:`WholeDirFixtures`), not
at the end of the worker's session."""
SKIP_KUBE = "KAIP_SKIP_KUBE=1"
EXTRA_SKIP = re.compile(r"optional extra kaip\[[a-z0-9_-]+\] is not installed")


def skip_kube() -> bool:
    return os.environ.get("KAIP_SKIP_KUBE") == "1"


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the xdist_group markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    strays: list[str] = []
    for item in items:
        parts = Path(str(item.path)).relative_to(TESTS).parts
        tier = TIERS.get(parts[0]) if len(parts) > 1 else None
        if tier is None:
            strays.append(item.nodeid)
            continue
        item.add_marker(getattr(pytest.mark, tier))
        if parts[:2] in QUIET_DIRS:
            item.add_marker(pytest.mark.quiet_machine)
        if tier in KUBE_TIERS and skip_kube():
            item.add_marker(pytest.mark.skip(reason=f"{SKIP_KUBE}: the {tier} tier is skipped"))
    _longest_first(items)
    if strays:
        known = ", ".join(f"tests/{d}/" for d in TIERS)
        raise pytest.UsageError(
            f"{len(strays)} test(s) outside the tier directories ({known}), first: {strays[0]}. "
            "Move them into one, or add their directory to TIERS in tests/conftest.py."
        )


def _longest_first(items: list[pytest.Item]) -> None:
    """The Kubernetes tiers, then :data:`LONGEST_FILES`, then the other tiers by :data:`FIRST`
    (stable: files keep their order otherwise)."""
    kube = [t for t in FIRST if t in KUBE_TIERS]

    def rank(item: pytest.Item) -> tuple[int, int]:
        parts = Path(str(item.path)).relative_to(TESTS).parts
        if parts[0] in kube:
            return 0, kube.index(parts[0])
        name = "/".join(parts[:2])
        if name in LONGEST_FILES:
            return 1, LONGEST_FILES.index(name)
        return 2, FIRST.index(parts[0]) if parts[0] in FIRST else len(FIRST)

    items.sort(key=rank)


def whole_dir(path: Path) -> str | None:
    """The directory of :data:`WHOLE_DIRS` that holds ``path`` (relative to tests/), if any."""
    for depth in range(1, len(path.parts)):
        name = "/".join(path.parts[:depth])
        if name in WHOLE_DIRS:
            return name
    return None


def work_unit(nodeid: str) -> str:
    """What one xdist worker runs whole: a test file, or a directory of :data:`WHOLE_DIRS`.

    A file's module and session fixtures (a kaip up, a control plane, the corpus's fifty CLI
    runs) are then paid once, on one worker.
    """
    path = nodeid.split("::", 1)[0]
    top, *rest = Path(path).parts
    whole = whole_dir(Path(*rest)) if rest else None
    return f"{top}/{whole}" if whole else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's scope scheduling with :func:`work_unit` as the scope, in collection order.

    (``--dist loadgroup``'s markers would say the same, but pytest 9.2 no longer reads the node
    id suffix pytest-xdist 3.8 gives them, so they group nothing.)
    """
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False  # keep the longest tiers first (_longest_first)
    return ByWorkUnit(config, log)


class WholeDirFixtures:
    """A session fixture of a :data:`WHOLE_DIRS` directory's conftest (a real node, a control
    plane, a model server) ends with the directory: when the next test is outside it, not at
    the end of the session. Side by side, the worker that ran the directory goes on with other
    files, and a cluster would otherwise idle beside them (CPU) and be stopped at the very end
    (the real node took 20-46 s to stop, with nothing else left to run). Torn down this way, a
    fixture would be set up again by any later test that asks for it; a directory's tests are
    contiguous (:func:`_longest_first` sorts by tier, stably), so none does.

    A plugin rather than this conftest's own hook: pytest asks a session fixture's hooks of the
    rootdir's conftests only, and this one is in tests/."""

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, object, object]:
        value = yield
        where = fixturedef.node  # where the fixture is defined: its conftest's directory
        if (
            fixturedef.scope == "session"
            and isinstance(where, pytest.Directory)
            and where.path.is_relative_to(TESTS)
            and where.path.relative_to(TESTS).as_posix() in WHOLE_DIRS
        ):
            # Before the session's own finalizer, which then finds the fixture finished.
            where.addfinalizer(functools.partial(fixturedef.finish, request))
        return value


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(WholeDirFixtures(), "kaip-whole-dir-fixtures")


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

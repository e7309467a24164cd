"""Files under ``.kaip/`` are private whatever the umask (issue 11 #13), SQLite's own included."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaip.local.private import open_private, private_dir, write_private
from kaip.local.state import State


@pytest.fixture(params=[0o000, 0o022, 0o277], ids=lambda m: f"umask-{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    before = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_db_and_its_wal_are_0600_in_a_0700_directory(tmp_path: Path, umask: int) -> None:
    state_dir = tmp_path / "work" / ".kaip"
    state = State.open(state_dir)
    try:
        state.set_stable("App", "web", "abc123")  # writes the WAL
        files = sorted(p.name for p in state_dir.iterdir())
        assert files == ["state.db", "state.db-shm", "state.db-wal"]
        assert {name: mode(state_dir / name) for name in files} == dict.fromkeys(files, 0o600)
        assert mode(state_dir) == mode(state_dir.parent) == 0o700
    finally:
        state.close()


def test_helpers_set_modes_and_tighten_what_an_older_kaip_left(tmp_path: Path, umask: int) -> None:
    old = tmp_path / ".kaip"
    old.mkdir(mode=0o755)
    os.chmod(old, 0o755)
    assert private_dir(old / "logs").parent == old
    assert (mode(old), mode(old / "logs")) == (0o755, 0o700)  # only what it was asked for
    private_dir(old)
    assert mode(old) == 0o700
    with open_private(old / "logs" / "a.log") as log:
        log.write(b"line\n")
    write_private(old / "run.json", "{}")
    write_private(old / "run.json", "{}")  # replaced, still private
    assert mode(old / "logs" / "a.log") == mode(old / "run.json") == 0o600
    assert sorted(p.name for p in old.iterdir()) == ["logs", "run.json"]  # no temporary left

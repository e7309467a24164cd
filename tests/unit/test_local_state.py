"""kaip.local.state against a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kaip.errors import PlatformError, StorageError
from kaip.local.state import (
    MIGRATIONS,
    SCHEMA_VERSION,
    STATE_FILE,
    EventRecord,
    RevisionRecord,
    State,
    StepRecord,
)


def revision(rev: str, at: float = 1.0) -> RevisionRecord:
    return RevisionRecord("Model", "digits", rev, "d" * 64, '{"owner":"x"}', "/spec.yaml", at)


def step(index: int, action: str) -> StepRecord:
    return StepRecord(index, 10, action, "why", 30, 0, 4.5, 300, 1, 3.0, 2.0)


def test_a_restart_resumes_from_what_was_recorded(tmp_path: Path) -> None:
    state = State.open(tmp_path / ".kaip")
    assert state.record_revision(revision("aaa"))
    assert not state.record_revision(revision("aaa"))
    state.set_stable("Model", "digits", "aaa")
    rollout = state.start_rollout("Model", "digits", "aaa", "bbb", "canary", at=5.0)
    state.record_step(rollout.id, step(0, "hold"))
    state.record_step(rollout.id, step(0, "advance"))
    state.close()

    again = State.open(tmp_path / ".kaip")
    assert again.schema_version == SCHEMA_VERSION
    assert again.stable("Model", "digits") == "aaa"
    assert again.revision("Model", "digits", "aaa") == revision("aaa")
    active = again.active_rollout("Model", "digits")
    assert active is not None
    assert (active.to_revision, active.step_index, active.status) == ("bbb", 1, "running")
    assert [s.action for s in again.steps(active.id)] == ["hold", "advance"]
    again.finish_rollout(active.id, "promoted", "all steps passed", at=9.0)
    again.set_stable("Model", "digits", "bbb")
    assert again.active_rollout("Model", "digits") is None
    assert again.resources() == [("Model", "digits", "bbb")]


def test_a_new_rollout_supersedes_the_running_one(tmp_path: Path) -> None:
    state = State.open(tmp_path)
    first = state.start_rollout("App", "ui", "a", "b", "canary", at=1.0)
    second = state.start_rollout("App", "ui", "a", "c", "canary", at=2.0)
    assert state.rollout(first.id) is not None
    assert state.rollout(first.id).status == "superseded"  # type: ignore[union-attr]
    active = state.active_rollout("App", "ui")
    assert active is not None and active.id == second.id
    assert [r.to_revision for r in state.rollouts("App", "ui")] == ["c", "b"]


def test_events_keep_who_what_outcome_and_duration(tmp_path: Path) -> None:
    state = State.open(tmp_path)
    for i in range(3):
        state.record_event(
            EventRecord(
                float(i), "Model", f"m{i}", "deploy", "a -> b", "ada", "promoted", "b", 12.5
            )
        )
    events = state.events(limit=2)
    assert [e.name for e in events] == ["m1", "m2"]
    assert events[0].who == "ada" and events[0].duration_s == 12.5
    assert [e.name for e in state.events(names=["m0"])] == ["m0"]


def test_a_newer_schema_is_refused_with_advice(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / STATE_FILE)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(PlatformError, match="upgrade kaip"):
        State.open(tmp_path)


def test_a_version_1_database_is_upgraded_in_place_keeping_its_events(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / STATE_FILE)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO events (at, kind, name, action, change, who, outcome) "
        "VALUES (1.0, 'Model', 'm', 'create', 'new', 'ada', 'created')"
    )
    db.commit()
    db.close()
    state = State.open(tmp_path)
    assert state.schema_version == SCHEMA_VERSION >= 2
    (old,) = state.events()
    assert (old.who, old.commit_sha, old.committed_at) == ("ada", None, None)
    state.record_event(
        EventRecord(
            2.0,
            "Model",
            "m",
            "deploy",
            "a -> b",
            "ada",
            "started",
            "b",
            commit_sha="c0ffee",
            committed_at=1.5,
        )
    )
    assert state.events()[-1].commit_sha == "c0ffee"


def test_a_lock_held_elsewhere_is_a_storage_error_and_a_transaction_keeps_nothing(
    tmp_path: Path,
) -> None:
    """Review #8: a locked state.db raised sqlite3's own error out of the controller's tick."""
    state = State.open(tmp_path / ".kaip")
    state.set_stable("Model", "digits", "aaa")
    other = sqlite3.connect(tmp_path / ".kaip" / STATE_FILE, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StorageError) as caught:
            state.set_stable("Model", "digits", "bbb")
        assert "cannot record the stable revision" in caught.value.message
        assert "is locked by another process (database is locked)" in caught.value.message
        assert state.stable("Model", "digits") == "aaa"  # reads go on
        with pytest.raises(StorageError), state.atomically():
            pass
    finally:
        other.execute("ROLLBACK")
        other.close()
    with pytest.raises(RuntimeError), state.atomically():  # every write inside, or none
        state.set_stable("Model", "digits", "ccc")
        state.record_event(EventRecord(1.0, "Model", "digits", "deploy", "a -> c", "me", "ok"))
        raise RuntimeError("the decision failed half way")
    assert state.stable("Model", "digits") == "aaa"
    assert state.events() == []
    with state.atomically():
        state.set_stable("Model", "digits", "ddd")
        with state.atomically():  # nested: joins the outer one
            state.record_event(EventRecord(2.0, "Model", "digits", "deploy", "a -> d", "me", "ok"))
    assert state.stable("Model", "digits") == "ddd" and len(state.events()) == 1
    state.close()

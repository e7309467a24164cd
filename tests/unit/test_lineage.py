"""Lineage joins the real registry, run records and state database: job -> run -> version ->
revisions -> rollout steps, and the refusals a quality gate recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaip.errors import RegistryError
from kaip.local.controller.lineage import lineage
from kaip.local.state import EventRecord, RevisionRecord, State, StepRecord
from kaip.registry import EmbeddedRegistry, Registration, RunStore


def _revision(state: State, revision: str, uri: str) -> None:
    spec = {"artifact": {"uri": uri, "format": "sklearn"}}
    state.record_revision(
        RevisionRecord("Model", "digits", revision, "d" * 64, json.dumps(spec), "/x", 1.0)
    )


def test_a_version_shows_its_job_run_revision_and_traffic_steps(tmp_path: Path) -> None:
    state_dir = tmp_path / ".kaip"
    registry = EmbeddedRegistry.open(state_dir)
    runs = RunStore(registry.db)
    state = State.open(state_dir)
    try:
        file = tmp_path / "m.joblib"
        file.write_bytes(b"weights")
        run = runs.start(
            job="train", revision="r1", spec_path="/x/kaip.yaml", max_retries=1,
            log_path="/x/log", checkpoint_dir=None, commit_sha="abc123",
        )  # fmt: skip
        runs.update(run.id, status="succeeded", exit_code=0, finished_at=run.started_at + 3)
        one = registry.register(Registration("digits", file, "sklearn"))
        file.write_bytes(b"better weights")
        two = registry.register(
            Registration(
                "digits", file, "sklearn", metrics={"accuracy": 0.97}, params={"C": "0.1"},
                job="train", run_id=run.id, source_commit="abc123",
            )
        )  # fmt: skip
        _revision(state, "rev1", one.reference)
        _revision(state, "rev2", two.reference)
        state.set_stable("Model", "digits", "rev1", 1.0)
        rollout = state.start_rollout("Model", "digits", "rev1", "rev2", "canary", 2.0)
        state.record_step(
            rollout.id, StepRecord(0, 10, "advance", "gates held", 20, 0, 5.0, 180, 0, 4.0, 3.0)
        )
        state.finish_rollout(rollout.id, "promoted", "all steps passed", 4.0)
        state.set_stable("Model", "digits", "rev2", 4.0)

        entries = lineage(registry, runs, state, "digits", "2")
        assert [e["version"]["version"] for e in entries] == [2]
        entry = entries[0]
        assert entry["job"] == "train"
        assert entry["run"]["id"] == run.id and entry["run"]["status"] == "succeeded"
        assert entry["version"]["sha256"] == two.digest
        assert entry["version"]["metrics"] == {"accuracy": 0.97}
        assert entry["version"]["commit"] == "abc123"
        [served] = entry["revisions"]
        assert (served["model"], served["revision"], served["stable_now"]) == (
            "digits",
            "rev2",
            True,
        )
        [moved] = served["rollouts"]
        assert moved["status"] == "promoted"
        assert [(s["weight"], s["action"]) for s in moved["steps"]] == [(10, "advance")]

        every = lineage(registry, runs, state, "digits")
        assert [e["version"]["version"] for e in every] == [1, 2]
        assert every[0]["run"] is None and every[0]["revisions"][0]["stable_now"] is False
    finally:
        state.close()
        registry.close()


def test_a_refused_version_shows_the_refusal_and_no_revision(tmp_path: Path) -> None:
    state_dir = tmp_path / ".kaip"
    registry = EmbeddedRegistry.open(state_dir)
    state = State.open(state_dir)
    try:
        file = tmp_path / "m.joblib"
        file.write_bytes(b"weights")
        version = registry.register(Registration("digits", file, "sklearn"))
        state.record_event(
            EventRecord(
                5.0, "Model", "digits", "deploy", f"refused {version.reference}", "kaip",
                "refused", None, None, "accuracy 0.5 < 0.95", None, None,
                version.reference, version.digest, version.created_at,
            )
        )  # fmt: skip
        [entry] = lineage(registry, RunStore(registry.db), state, "digits", "latest")
        assert entry["revisions"] == []
        assert [e["outcome"] for e in entry["events"]] == ["refused"]
        with pytest.raises(RegistryError):
            lineage(registry, RunStore(registry.db), state, "nothing")
    finally:
        state.close()
        registry.close()

"""kaip.cli.rollout_wait: each rollout outcome and its exit code, timeouts, durations.

The admin API is replaced by a scripted ``fetch`` (the module's own boundary); time by a fake
clock, so nothing here sleeps.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kaip.cli.rollout_wait import Target, parse_timeout, progress_line, target_of, wait
from kaip.errors import (
    ConfigError,
    KaipError,
    RolloutAbortedError,
    RolloutFailedError,
    RolloutTimeoutError,
)

VERDICT = {
    "step_index": 0, "weight": 10, "action": "rollback",
    "reason": "error rate 30.0% over 40 requests exceeds maxErrorRate 5.0%",
    "canary_requests": 40, "canary_errors": 12, "stable_requests": 300, "stable_errors": 0,
}  # fmt: skip


def record(status: str, id: int = 7, reason: str = "", verdicts: Any = ()) -> dict[str, Any]:
    return {
        "id": id, "from_revision": "aaaaaaaaaa", "to_revision": "bbbbbbbbbb", "status": status,
        "reason": reason, "verdicts": list(verdicts),
    }  # fmt: skip


def running(step: int, action: str, reason: str) -> dict[str, Any]:
    return {
        "resource": {
            "kind": "Model", "name": "digits", "weights": {"aaaaaaaaaa": 90, "bbbbbbbbbb": 10},
            "rollout": {"id": 7, "step": step, "steps": [10, 50, 100],
                        "verdict": {"action": action, "reason": reason}},
        },
        "history": [record("running")],
    }  # fmt: skip


def finished(status: str, reason: str = "", verdicts: Any = ()) -> dict[str, Any]:
    return {
        "resource": {"kind": "Model", "name": "digits", "rollout": None},
        "history": [record(status, reason=reason, verdicts=verdicts)],
    }


class Script:
    """Answers in order, the last one forever; a clock that moves one second per poll."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.now = 0.0

    def fetch(self, name: str) -> dict[str, Any]:
        assert name == "digits"
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def sleep(self, seconds: float) -> None:
        self.now += 1.0


def run(script: Script, target: Target, timeout: float = 60) -> list[str]:
    said: list[str] = []
    wait([target], script.fetch, said.append, timeout_seconds=timeout,
         clock=lambda: script.now, sleep=script.sleep)  # fmt: skip
    return said


DIGITS = Target("Model", "digits", 7)


def test_a_promoted_rollout_ends_quietly_with_its_steps_on_the_way() -> None:
    script = Script(
        running(1, "hold", "pausing: 1s of 10s at 10%"),
        running(1, "hold", "pausing: 2s of 10s at 10%"),  # only a counter ticked: not news
        running(2, "hold", "pausing: 0s of 10s at 50%"),
        finished("promoted", "all 3 steps passed"),
    )
    said = run(script, DIGITS)
    assert len(said) == 3
    assert said[-1].endswith("aaaaaaaaaa -> bbbbbbbbbb: promoted (all 3 steps passed)")


def test_one_progress_line_for_wait_and_status_differing_only_in_its_prefix() -> None:
    answer = running(2, "hold", "pausing: 3s of 10s at 50%")
    body = "step 2/3 weights {'aaaaaaaaaa': 90, 'bbbbbbbbbb': 10}: hold: pausing: 3s of 10s at 50%"
    assert progress_line(answer) == f"Model digits: {body}"
    assert progress_line(answer, prefix="  ") == f"  {body}"
    assert progress_line(finished("promoted")) == ""


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        ("rolled_back", RolloutFailedError, 4),
        ("aborted", RolloutAbortedError, 5),
        ("superseded", RolloutAbortedError, 5),
    ],
)
def test_every_outcome_short_of_100_percent_is_an_error_with_its_code(
    status: str, error: type[KaipError], code: int
) -> None:
    script = Script(running(1, "hold", "starting"), finished(status, "why", [VERDICT]))
    with pytest.raises(error) as raised:
        run(script, DIGITS)
    assert raised.value.exit_code == code
    assert raised.value.message == (
        f"Model digits: rollout aaaaaaaaaa -> bbbbbbbbbb {status.replace('_', ' ')}: why"
    )


def test_the_verdict_and_its_evidence_are_printed() -> None:
    script = Script(finished("rolled_back", VERDICT["reason"], [VERDICT]))
    said: list[str] = []
    with pytest.raises(RolloutFailedError):
        wait([DIGITS], script.fetch, said.append, timeout_seconds=60)
    assert said[1] == (
        "  step 1 at 10%: rollback: error rate 30.0% over 40 requests exceeds maxErrorRate 5.0% "
        "(canary 40 requests, 12 errors; stable 300 requests, 0 errors)"
    )


def test_a_rollout_still_running_at_the_timeout_is_its_own_error() -> None:
    script = Script(running(1, "hold", "waiting for evidence: 0 of minRequests 20 at 10%"))
    with pytest.raises(RolloutTimeoutError) as raised:
        run(script, DIGITS, timeout=5)
    assert raised.value.exit_code == 6
    assert "after --timeout 5s" in raised.value.message
    assert script.now == 5.0


def test_a_rollout_gone_from_the_history_counts_as_replaced() -> None:
    script = Script(finished("promoted"))
    with pytest.raises(RolloutAbortedError, match="no longer in the recent history"):
        run(script, Target("Model", "digits", 3))


def test_a_first_deploy_is_waited_for_until_ready() -> None:
    not_ready = {"resource": {"kind": "Model", "name": "digits", "ready": False}, "history": []}
    ready = {"resource": {"kind": "Model", "name": "digits", "ready": True, "stable": "c"}}
    assert run(Script(not_ready, ready), Target("Model", "digits", None)) == [
        "Model digits: ready at revision c"
    ]
    with pytest.raises(RolloutTimeoutError):
        run(Script(not_ready), Target("Model", "digits", None), timeout=3)


def test_watch_follows_the_running_rollout_else_judges_the_latest() -> None:
    assert target_of(running(1, "hold", "x"), "digits") == DIGITS
    assert target_of(finished("rolled_back"), "digits") == DIGITS
    nothing = {"resource": {"kind": "App", "name": "web", "rollout": None}, "history": []}
    assert target_of(nothing, "web") == Target("App", "web", None)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0)]
)
def test_timeouts_read_like_durations(text: str, seconds: float) -> None:
    assert parse_timeout(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "10x", "m", "30d", "9999h"])
def test_a_bad_timeout_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ConfigError, match="--timeout"):
        parse_timeout(text)


def test_the_cli_refuses_a_bad_timeout_before_anything_else(tmp_path: Path) -> None:
    for args in (("deploy", str(tmp_path), "--wait", "--timeout", "10x"),
                 ("rollout", "status", "digits", "--watch", "--timeout", "soon")):  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "kaip.cli", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2, result
        assert "--timeout" in result.stderr and "e.g. 90s, 10m or 1h" in result.stderr
        assert "Traceback" not in result.stderr

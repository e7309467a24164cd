"""The controller's troubles: backoff, what is reported, and what kaip status shows."""

from __future__ import annotations

from kaip.local.controller.troubles import MAX_BACKOFF_S, Troubles


def test_a_failing_tick_backs_off_to_the_cap_and_is_reported_sparingly() -> None:
    lines: list[str] = []
    now = [100.0]
    troubles = Troubles(lines.append, period_s=1.0, clock=lambda: now[0])
    delays = [troubles.failed("controller tick", "state.db is locked") for _ in range(12)]
    assert delays == [1, 2, 4, 8, 10, 10, 10, 10, 10, 10, 10, 10]
    assert max(delays) == MAX_BACKOFF_S
    assert lines == [
        "controller tick failed (once): state.db is locked; kaip keeps serving and tries again "
        "in 1 s",
        "controller tick failed (10 times in a row): state.db is locked; kaip keeps serving and "
        "tries again in 10 s",
    ]
    (current,) = troubles.current()
    assert (current.what, current.failures, current.since) == ("controller tick", 12, 100.0)


def test_a_new_message_is_reported_and_recovery_clears_the_trouble() -> None:
    lines: list[str] = []
    now = [0.0]
    troubles = Troubles(lines.append, period_s=0.5, clock=lambda: now[0])
    troubles.failed("controller tick", "locked")
    troubles.failed("controller tick", "disk full")
    now[0] = 42.0
    troubles.cleared("controller tick")
    troubles.cleared("controller tick")  # nothing to clear: nothing said
    assert [line.split(":")[0] for line in lines] == [
        "controller tick failed (once)",
        "controller tick failed (2 times in a row)",
        "controller tick works again after 2 times in a row in 42 s",
    ]
    assert troubles.current() == []

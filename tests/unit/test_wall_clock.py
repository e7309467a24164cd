"""The state's wall clock: the system's, or a file's for histories scripted through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaip.errors import PlatformError
from kaip.local.state import EventRecord, FileClock, State


def test_what_the_state_records_without_a_time_carries_its_clock(tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    clock.write_text("1800000000.5\n")
    state = State.open(tmp_path / ".kaip", FileClock(clock))
    try:
        assert state.now() == 1800000000.5
        state.set_stable("Model", "m", "r1")
        clock.write_text("1800003600")
        assert state.now() == 1800003600.0
        state.record_event(
            EventRecord(state.now(), "Model", "m", "deploy", "r1 -> r2", "me", "started", "r2")
        )
        ((_, event),) = state.history(1900000000.0)
        assert event.at == 1800003600.0
    finally:
        state.close()


@pytest.mark.parametrize(
    ("text", "found"),
    [("yesterday", "'yesterday'"), ("-5", "'-5'"), ("1" * 80, "at most 64 bytes"), ("", "b''")],
)
def test_a_clock_file_that_holds_no_time_is_refused_naming_it(
    tmp_path: Path, text: str, found: str
) -> None:
    clock = tmp_path / "clock"
    clock.write_text(text)
    with pytest.raises(PlatformError) as refused:
        FileClock(clock)
    assert (
        str(clock) in refused.value.message and "seconds since the epoch" in refused.value.message
    )
    assert found in refused.value.message


def test_a_missing_clock_file_is_refused_and_a_later_bad_read_keeps_the_last_time(
    tmp_path: Path,
) -> None:
    clock = tmp_path / "clock"
    with pytest.raises(PlatformError, match=r"wall clock file .*clock"):
        FileClock(clock)
    clock.write_text("1800000000")
    read = FileClock(clock)
    clock.write_text("not a time")
    assert read() == 1800000000.0
    clock.unlink()
    assert read() == 1800000000.0

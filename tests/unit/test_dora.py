"""DORA metrics (kaip.dora) from a scripted history written to a real state database.

The history (:mod:`dora_history`: 20 deployments over 10 simulated days, 3 rolled back, one of
them after reaching users) is written into ``.kaip/state.db`` with scripted times -- the fake
clock stops at that boundary -- and read back the way the portal reads it. Every expected number
is worked out by hand in :data:`dora_history.EXPECTED`.
"""

from __future__ import annotations

import pytest
from dora_history import EXPECTED, OWNERS, T0, UNTIL, H, record_history

from kaip.dora import Event, delivery_metrics, deployments, summarise
from kaip.local.state import State
from kaip.portal.delivery import history


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> list[Event]:
    state_dir = tmp_path_factory.mktemp("dora") / ".kaip"
    record_history(state_dir)
    state = State.open(state_dir)
    try:
        return history(state, UNTIL)
    finally:
        state.close()


def test_the_whole_window_matches_the_hand_computed_numbers(events: list[Event]) -> None:
    expected = EXPECTED["all"]
    m = delivery_metrics(events, since=T0, until=UNTIL, owners=OWNERS)
    assert m.days == 10
    assert m.deployments == expected["deployments"]
    assert m.resources == 3
    assert m.per_day == pytest.approx(expected["per_day"])
    assert m.decided == expected["decided"]
    assert len(m.caught_by_canary) == expected["caught_by_canary"]
    assert len(m.user_impacting) == expected["user_impacting"]
    assert m.change_fail_rate == pytest.approx(expected["change_fail_rate"])
    assert m.rework_rate == pytest.approx(expected["rework_rate"])
    assert m.lead_time_commit.count == expected["lead_commit_count"]
    assert m.lead_time_commit.median_s == pytest.approx(expected["lead_commit_median_h"] * H)
    assert m.lead_time_commit.p90_s == pytest.approx(expected["lead_commit_p90_h"] * H)
    assert m.lead_time_artifact.count == expected["lead_artifact_count"]
    assert m.lead_time_artifact.median_s == pytest.approx(expected["lead_artifact_median_h"] * H)
    assert m.lead_time_artifact.p90_s == pytest.approx(expected["lead_artifact_p90_h"] * H)
    assert m.recovery.count == 1
    assert m.recovery.median_s == pytest.approx(expected["recovery_median_h"] * H)
    assert m.refused == expected["refused"]
    assert m.frequency_band.startswith("elite")
    assert m.lead_time_band.startswith("elite")
    assert m.recovery_band.startswith("elite")


def test_each_number_names_the_deployments_behind_it(events: list[Event]) -> None:
    m = delivery_metrics(events, since=T0, until=UNTIL, owners=OWNERS)
    by_id = {d.id: d for d in m.listed}
    caught = sorted((by_id[i].name, by_id[i].revision) for i in m.caught_by_canary)
    assert caught == [("digits", "a3"), ("sentiment", "b3")]
    assert [(by_id[i].name, by_id[i].revision) for i in m.user_impacting] == [("digits", "a4")]
    assert [(by_id[i].name, by_id[i].revision) for i in m.rework] == [("digits", "a2")]
    assert [by_id[i].revision for i in m.recovery.deployments] == ["a4"]
    running = [d for d in m.listed if d.ending == "running"]
    assert [(d.name, d.revision) for d in running] == [("digits", "a8")]  # promoted after until
    superseded = [d.revision for d in m.listed if d.ending == "superseded"]
    assert superseded == ["a6"]
    assert {d.name for d in m.listed} == {"digits", "sentiment", "web"}  # legacy: before since


@pytest.mark.parametrize("owner", ["team-a", "team-b"])
def test_per_owner(events: list[Event], owner: str) -> None:
    expected = EXPECTED[owner]
    m = delivery_metrics(events, since=T0, until=UNTIL, owners=OWNERS, owner=owner)
    assert m.deployments == expected["deployments"]
    assert m.decided == expected["decided"]
    assert m.change_fail_rate == pytest.approx(expected["change_fail_rate"])
    assert m.rework_rate == pytest.approx(expected["rework_rate"])
    assert m.lead_time_commit.median_s == pytest.approx(expected["lead_commit_median_h"] * H)
    assert m.lead_time_commit.p90_s == pytest.approx(expected["lead_commit_p90_h"] * H)
    if "per_day" in expected:
        assert m.per_day == pytest.approx(expected["per_day"])
        assert m.frequency_band.startswith("high")


def test_per_resource_and_a_narrower_window(events: list[Event]) -> None:
    digits = delivery_metrics(events, since=T0, until=UNTIL, owners=OWNERS, resource="digits")
    assert (digits.deployments, digits.decided) == (9, 8)  # d1-d9; d9 still running
    assert digits.change_fail_rate == pytest.approx(2 / 8)  # d3 caught, d4 undone
    assert digits.refused == 1
    # day 3 only: d4 (promoted), d5 (the undo), s4 (promoted); d4 failed after reaching users
    day3 = delivery_metrics(events, since=T0 + 72 * H, until=T0 + 96 * H, owners=OWNERS)
    assert sorted((d.name, d.revision) for d in day3.listed) == [
        ("digits", "a2"),
        ("digits", "a4"),
        ("sentiment", "b4"),
    ]
    assert day3.change_fail_rate == pytest.approx(1 / 3)
    assert day3.per_day == pytest.approx(3.0)


def test_a_window_sees_only_what_was_known_before_its_end(events: list[Event]) -> None:
    """Before hour 78 d4 is fine; at 78.25 the undo has started (d4 failed) but is not at 100 %."""
    before = delivery_metrics(events, since=T0, until=T0 + 77 * H, owners=OWNERS)
    assert before.user_impacting == () and before.rework == ()
    during = delivery_metrics(events, since=T0, until=T0 + 78.25 * H, owners=OWNERS)
    by_id = {d.id: d for d in during.listed}
    assert [by_id[i].revision for i in during.user_impacting] == ["a4"]
    assert during.recovery.count == 0 and during.recovery.median_s is None
    assert during.recovery_band == "no data"


def test_no_deployments_gives_no_rates() -> None:
    m = delivery_metrics([], since=0, until=86400)
    assert (m.deployments, m.change_fail_rate, m.rework_rate) == (0, None, None)
    with pytest.raises(ValueError, match="end after"):
        delivery_metrics([], since=5, until=5)


def test_summaries_ignore_durations_of_zero_or_less() -> None:
    s = summarise([(1, 10.0), (2, -3.0), (3, 0.0), (4, 30.0)])
    assert (s.count, s.median_s, s.p90_s, s.deployments) == (2, 20.0, 30.0, (1, 4))


def test_a_rollout_event_of_another_revision_ends_nothing() -> None:
    events = [
        Event(1, 0, "Model", "m", "create", "created", "r1"),
        Event(2, 10, "Model", "m", "deploy", "started", "r2"),
        Event(3, 20, "Model", "m", "rollout", "rolled_back", "zz"),
    ]
    (first, second) = deployments(events, {})
    assert first.ending == "full" and second.ending == "running"

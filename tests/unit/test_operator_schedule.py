"""The operator's schedule (when a resource is looked at again) and what counts as a change."""

from __future__ import annotations

import threading
import time

from kaip.kube.operator.handlers import intent
from kaip.kube.operator.schedule import Key, Schedule

A = Key("Model", "ns", "a", "uid-a")
B = Key("Model", "ns", "b", "uid-b")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_keys_come_due_in_time_order_and_only_once() -> None:
    clock = Clock()
    schedule = Schedule(lambda key: None, clock=clock)
    schedule.after(B, 5)
    schedule.after(A, 1)

    assert schedule.take_due() == []
    clock.now += 1
    assert schedule.take_due() == [A]
    clock.now += 10
    assert schedule.take_due() == [B]
    assert schedule.take_due() == []
    assert len(schedule) == 0


def test_the_latest_plan_for_a_key_replaces_the_earlier_one() -> None:
    clock = Clock()
    schedule = Schedule(lambda key: None, clock=clock)
    schedule.after(A, 1)
    schedule.after(A, 60)  # e.g. a pass found it waiting only for its workloads

    clock.now += 5
    assert schedule.take_due() == []
    assert schedule.planned(A.uid) == 55
    clock.now += 55
    assert schedule.take_due() == [A]


def test_a_cancelled_key_never_comes_due() -> None:
    clock = Clock()
    schedule = Schedule(lambda key: None, clock=clock)
    schedule.after(A, 1)
    schedule.cancel(A.uid)

    clock.now += 10
    assert schedule.take_due() == []
    assert schedule.planned(A.uid) is None


def test_the_thread_runs_what_is_due_and_sleeps_otherwise() -> None:
    ran: list[Key] = []
    done = threading.Event()

    def run(key: Key) -> None:
        ran.append(key)
        done.set()

    schedule = Schedule(run)
    schedule.start()
    try:
        schedule.after(B, 3600)
        schedule.after(A, 0.05)
        assert done.wait(5)
        time.sleep(0.2)
        assert ran == [A]
        assert schedule.planned(B.uid) is not None
    finally:
        schedule.stop()


def test_a_failing_pass_does_not_stop_the_schedule() -> None:
    ran = threading.Event()

    def run(key: Key) -> None:
        if key == A:
            raise RuntimeError("a bug in one pass")
        ran.set()

    schedule = Schedule(run)
    schedule.start()
    try:
        schedule.after(A, 0)
        schedule.after(B, 0.1)
        assert ran.wait(5)
    finally:
        schedule.stop()


def model(generation: int = 1, **meta: object) -> dict[str, object]:
    return {
        "metadata": {"name": "a", "generation": generation, **meta},
        "status": {"observedGeneration": generation, "conditions": []},
    }


def test_intent_changes_with_the_spec_labels_and_user_annotations_only() -> None:
    base = intent(model())

    assert intent({**model(), "status": {"observedGeneration": 7}}) == base
    assert intent(model(resourceVersion="99")) == base
    assert intent(model(annotations={"kubectl.kubernetes.io/last-applied": "{}"})) == base
    assert intent(model(annotations={"kaip.dev/last-handled-configuration": "{}"})) == base
    assert intent(model(generation=2)) != base
    assert intent(model(labels={"team": "fraud"})) != base
    assert intent(model(annotations={"example.com/ticket": "OPS-1"})) != base

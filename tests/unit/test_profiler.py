"""The sampling profiler: it sees a busy thread's function, renders speedscope and collapsed
stacks, runs one profile at a time and refuses unbounded ones."""

from __future__ import annotations

import threading
import time

import pytest

from kaip.serving.profiler import Sampler


def burn_here(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


def test_a_busy_threads_function_is_in_the_profile() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=burn_here, args=(stop,))
    worker.start()
    try:
        profile = Sampler().run(0.5, 100)
    finally:
        stop.set()
        worker.join()
    assert profile is not None and profile.samples > 5
    top = [frame for frame, _ in profile.top(10)]
    assert any(frame.startswith("burn_here (") for frame in top), top
    assert profile.top_self(1)[0][0].startswith("burn_here (")
    doc = profile.speedscope("test")
    frames = doc["shared"]["frames"]
    [sampled] = doc["profiles"]
    assert sampled["type"] == "sampled" and len(sampled["samples"]) == len(sampled["weights"])
    assert sum(sampled["weights"]) == sampled["endValue"]
    assert all(0 <= i < len(frames) for stack in sampled["samples"] for i in stack)
    assert any("burn_here (" in line for line in profile.collapsed().splitlines())


def test_one_profile_at_a_time_and_bounded_inputs() -> None:
    sampler = Sampler()
    results: list[object] = []
    first = threading.Thread(target=lambda: results.append(sampler.run(5.0, 50)))
    first.start()
    for _ in range(1000):  # until the first profile runs (bounded: 10 s)
        if sampler._busy.locked():
            break
        time.sleep(0.01)
    second = sampler.run(0.1, 50)  # while the first runs
    first.join()
    assert results[0] is not None
    assert second is None
    for seconds, rate in ((0, 100), (121, 100), (1, 0), (1, 1000)):
        with pytest.raises(ValueError):
            sampler.run(seconds, rate)

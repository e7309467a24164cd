"""Stop strings found piece by piece, and when the generation pool counts as wedged."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from kaip.serving.generation import GenerationPool, StopMatcher, _Job

TEXT = st.text(alphabet="abc", max_size=12)


def _whole_text_cut(pieces: list[str], stops: list[str]) -> tuple[int, int] | None:
    """What searching everything generated so far after each piece gives: (piece, cut)."""
    text = ""
    for index, piece in enumerate(pieces):
        text += piece
        found = [i for s in stops if (i := text.find(s)) >= 0]
        if found:
            return index, max(0, len(piece) - (len(text) - min(found)))
    return None


@given(st.lists(TEXT, max_size=12), st.lists(TEXT.filter(bool), min_size=1, max_size=4))
@example(pieces=["aa", "bc", "c"], stops=["bcc", "aaaaaa"])  # a window shorter than the keep
def test_matching_new_text_only_cuts_where_searching_all_of_it_would(
    pieces: list[str], stops: list[str]
) -> None:
    matcher = StopMatcher(stops)
    cut = None
    for index, piece in enumerate(pieces):
        at = matcher.feed(piece)
        assert len(matcher._tail) < max(map(len, stops))  # never more than a stop's worth
        if at is not None:
            cut = index, at
            break
    assert cut == _whole_text_cut(pieces, stops)


def test_a_stop_string_across_pieces_ends_the_text_before_it() -> None:
    matcher = StopMatcher(["\n\nHuman:", "END"])
    assert matcher.feed("hello") is None
    assert matcher.feed(" world\n") is None
    assert matcher.feed("\nHum") is None
    assert matcher.feed("an: hi") == 0  # began two pieces back, which were already sent
    matcher = StopMatcher(["END"])
    assert matcher.feed("one two EN") is None
    assert matcher.feed("D three") == 0
    assert StopMatcher(["x"]).feed("abcxd") == 3


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_pool_is_wedged_only_when_every_thread_is_stalled() -> None:
    clock = Clock()
    pool = GenerationPool(2, max_waiting=8, stall_seconds=30, clock=clock)
    jobs = [_Job(), _Job(), _Job()]
    for job in jobs:
        job.progress = clock.now
    pool._jobs.update(jobs)
    jobs[0].running = True
    clock.now += 31
    assert pool.wedged() is None  # one thread of two is stuck, the other is free
    jobs[1].running = True
    jobs[1].progress = clock.now - 5
    assert pool.wedged() is None  # the other one still makes progress
    clock.now += 26
    assert pool.wedged() == "all 2 generation threads have produced nothing for over 30 s"
    jobs[1].progress = clock.now
    assert pool.wedged() is None

"""Stop strings found piece by piece, and when the generation pool counts as wedged."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from kaip.serving.generation import GenerationPool, StopMatcher, _Job

TEXT = st.text(alphabet="abc", max_size=12)


def _whole_text_cut(pieces: list[str], stops: list[str]) -> str:
    """What searching everything generated so far after each piece gives: the text up to where
    the first stop string to appear begins (generation ends there: a stop that would complete
    later never does)."""
    text = ""
    for piece in pieces:
        text += piece
        found = [i for s in stops if (i := text.find(s)) >= 0]
        if found:
            return text[: min(found)]
    return text


def _fed(matcher: StopMatcher, pieces: list[str], longest: int) -> tuple[list[str], bool]:
    out = []
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        out.append(text)
        assert len(matcher._held) < longest  # never more than a stop's worth held back
        if stopped:
            return out, True
    return [*out, matcher.flush()], False


@given(st.lists(TEXT, max_size=12), st.lists(TEXT.filter(bool), min_size=1, max_size=4))
@example(pieces=["aa", "bc", "c"], stops=["bcc", "aaaaaa"])  # a window shorter than the keep
@example(pieces=["ab", "a", "bc"], stops=["abc"])  # a false start, then the stop
@example(pieces=["ab", "a"], stops=["b", "aba"])  # the first stop to complete ends it
def test_matching_new_text_only_cuts_where_searching_all_of_it_would(
    pieces: list[str], stops: list[str]
) -> None:
    out, _ = _fed(StopMatcher(stops), pieces, max(map(len, stops)))
    assert "".join(out) == _whole_text_cut(pieces, stops)


def test_a_stop_string_across_pieces_is_never_let_out() -> None:
    matcher = StopMatcher(["\n\nHuman:", "END"])
    assert matcher.feed("hello") == ("hello", False)
    assert matcher.feed(" world\n") == (" world", False)  # "\n" may begin a stop: held
    assert matcher.feed("\nHum") == ("", False)
    assert matcher.feed("an: hi") == ("", True)  # the stop began two pieces back: cut there
    matcher = StopMatcher(["END"])
    assert matcher.feed("one two EN") == ("one two ", False)
    assert matcher.feed("D three") == ("", True)
    matcher = StopMatcher(["END"])
    assert matcher.feed("one E") == ("one ", False)
    assert matcher.feed("xit") == ("Exit", False)  # it was not the stop after all
    assert matcher.flush() == ""
    assert StopMatcher(["x"]).feed("abcxd") == ("abc", True)


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

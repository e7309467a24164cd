"""The portal's profile page (kaip.portal.profile): hot frames from folded stacks."""

from __future__ import annotations

from kaip.portal.profile import hot_frames, profile_result

STACKS = """\
main (app.py:1);serve (app.py:9);predict (model.py:4) 30
main (app.py:1);serve (app.py:9);parse (codec.py:7) 10
main (app.py:1);serve (app.py:9) 5
not a stack line
main (app.py:1);predict (model.py:4) 5
"""


def test_self_samples_rank_frames_and_in_stack_counts_each_stack_once() -> None:
    total, frames = hot_frames(STACKS)
    assert total == 50
    assert frames == [
        ("predict (model.py:4)", 35, 35),
        ("parse (codec.py:7)", 10, 10),
        ("serve (app.py:9)", 5, 45),
    ]


def test_the_page_escapes_frames_and_says_when_nothing_ran() -> None:
    html = profile_result("m", "m-abc-1", "abc", 2, "<b>x</b> (y.py:1) 3\n")
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "No samples" in profile_result("m", "m-abc-1", "abc", 2, "")

"""The resource page's profile button: a bounded CPU profile of one replica, read at a glance.

The form (a session's, with its CSRF token) asks the source to profile a Model's replica for a
few seconds (:data:`SECONDS`, at most :data:`MAX_SECONDS`); the answer page shows where the
samples were: the :data:`TOP` functions by self samples (the frame on top of the stack) with
their share of all samples and of the stacks they appear in, and the folded stacks themselves
("collapsed" format, one ``frame;frame;frame COUNT`` per line) to paste into a flame graph tool
(``flamegraph.pl``, speedscope). Pure: parsing and rendering only, every value escaped.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import quote

from kaip.portal.pages import _e

SECONDS = 5.0
RATE_HZ = 100.0
MAX_SECONDS = 30.0
TOP = 25
MAX_SHOWN = 200_000
"""The most characters of folded stacks the page shows."""


def hot_frames(collapsed: str) -> tuple[int, list[tuple[str, int, int]]]:
    """(all samples, [(frame, self samples, samples of stacks it is in)] by self samples)."""
    own: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            inside[frame] += samples
    ranked = sorted(own.items(), key=lambda item: (-item[1], item[0]))[:TOP]
    return total, [(frame, n, inside[frame]) for frame, n in ranked]


def profile_form(name: str, csrf: str | None) -> str:
    """The button (a session's only)."""
    if csrf is None:
        return ""
    action = f"/resources/{quote(name, safe='')}/profile"
    return (
        f'<form method="post" action="{_e(action)}" id="profile">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        f'<label>Profile a replica for <input name="seconds" type="number" min="1" '
        f'max="{MAX_SECONDS:g}" step="1" value="{SECONDS:g}"> s</label> '
        '<button type="submit">Profile</button></form>'
    )


def profile_result(name: str, replica: str, revision: str, seconds: float, collapsed: str) -> str:
    total, frames = hot_frames(collapsed)
    if not total:
        table = "<p>No samples: the replica ran no Python while it was watched.</p>"
    else:
        rows = "".join(
            f"<tr><td><code>{_e(frame)}</code></td>"
            f'<td class="num">{n}</td><td class="num">{100 * n / total:.1f} %</td>'
            f'<td class="num">{100 * within / total:.1f} %</td></tr>'
            for frame, n, within in frames
        )
        table = (
            '<table id="hot-frames"><thead><tr><th>Function (file:line)</th><th>Self samples'
            "</th><th>Self</th><th>In stack</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    shown = collapsed if len(collapsed) <= MAX_SHOWN else collapsed[:MAX_SHOWN] + "\n…"
    return (
        f"<p>Replica <strong>{_e(replica)}</strong> (revision {_e(revision)}), {seconds:g} s, "
        f'<strong id="profile-samples">{total}</strong> samples.</p>{table}'
        "<details><summary>Folded stacks (paste into flamegraph.pl or speedscope)</summary>"
        f'<pre id="profile-stacks">{_e(shown)}</pre></details>'
        f'<p><a href="/resources/{_e(quote(name, safe=""))}">Back to {_e(name)}</a></p>'
    )

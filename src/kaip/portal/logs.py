"""A resource's replica logs on its page: the last lines of each replica, kept current live.

The page holds a ``<pre>`` that the resource's log stream (``GET /resources/NAME/logs``, the
same Server-Sent Events machinery as the rollout, :func:`kaip.portal.live.rollout_stream`)
replaces whenever a replica's log grew: the last :data:`TAIL_LINES` lines of each replica
running now, at most :data:`TAIL_BYTES` read from the end of each file and each line cut at
:data:`MAX_LINE_CHARS`, so a chatty replica costs the page a bounded amount and a reconnecting
browser never sees a line twice. Reading the files is the source's business
(:meth:`~kaip.portal.source.PortalSource.log_tail`); this module only reads a file's tail and
renders lines, every value escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from kaip.portal.pages import _e

TAIL_BYTES = 16 * 1024
TAIL_LINES = 100
MAX_LINE_CHARS = 500


def tail(path: Path) -> list[str]:
    """The last :data:`TAIL_LINES` whole lines of ``path`` (none when it cannot be read)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            start = max(0, size - TAIL_BYTES)
            handle.seek(start)
            data = handle.read(TAIL_BYTES)
    except OSError:
        return []
    lines = data.decode(errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # began mid-line
    return [line[:MAX_LINE_CHARS] for line in lines[-TAIL_LINES:]]


def logs_fragment(lines: Sequence[tuple[str, str]], hint: str) -> str:
    """The ``<pre>``'s content: ``replica | line`` for each line, or what to do instead."""
    if not lines:
        return f'<p class="muted">{_e(hint or "No log lines yet.")}</p>'
    text = "\n".join(f"{replica} | {line}" for replica, line in lines)
    return f'<pre id="log-lines">{_e(text)}</pre>'


def logs_section(name: str, fragment: str) -> str:
    """The page's log part, replaced by each ``log`` event of the resource's log stream."""
    url = f"/resources/{quote(name, safe='')}/logs"
    return (
        f'<section hx-ext="sse" sse-connect="{_e(url)}">'
        f'<div id="logs" sse-swap="log">{fragment}</div></section>'
    )

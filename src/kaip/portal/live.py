"""Live rollout state for the portal: an HTML fragment, pushed by Server-Sent Events on change.

The rule: the browser holds one ``EventSource`` per open resource page (htmx's SSE extension,
vendored under ``static/``) and never polls. The server side of that stream,
:func:`rollout_stream`, looks at that one resource through the portal's source once per
source tick (``kaip up``'s controller tick; on a cluster the source's cached list), at most
every :data:`MIN_LOOK_S`, renders :func:`rollout_fragment` and sends
it as an ``event: rollout`` only when it differs from the last one sent, with a comment line
every :data:`KEEP_ALIVE_S` so proxies keep the connection open. A stream ends after
:data:`STREAM_LIFETIME_S` (the browser reconnects by itself) or when the client goes; at most
:data:`MAX_STREAMS` are open at once (503 beyond), so streams never take every connection the
control port allows. Reads only; every value in a fragment is escaped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from kaip.portal.pages import _count, _e, _num, _weights

STATIC_DIR = Path(__file__).parent / "static"
VENDORED: Mapping[str, str] = {
    "htmx-2.0.11.min.js": "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717",
    "htmx-ext-sse-2.2.4.min.js": "98a46496de0c3605fbffdce9167ba427bdd9553184f83f149c261891a92c0136",
}
"""The scripts under ``static/`` the portal serves (at ``/static/NAME``), with their sha256
(``static/README.md`` says where each came from)."""
SCRIPTS = (
    '<meta name="htmx-config" content=\'{"allowEval":false,"allowScriptTags":false,'
    '"includeIndicatorStyles":false}\'>'
    + "".join(f'<script src="/static/{name}" defer></script>' for name in VENDORED)
)
"""What a live page adds to its ``<head>``: htmx without eval or inline scripts, and SSE."""
MAX_STREAMS = 16
MIN_LOOK_S = 0.25
"""A stream looks at its resource once per controller tick, never more often than this."""
KEEP_ALIVE_S = 15.0
STREAM_LIFETIME_S = 600.0


def live_section(name: str, fragments: Mapping[str, str]) -> str:
    """The resource page's live part: the rollout's state and, apart from it so that its
    buttons stay still while the numbers change, the actions; each replaced as the stream
    sends its event (``rollout``, ``actions``)."""
    url = f"/resources/{quote(name, safe='')}/events"
    return (
        f'<section hx-ext="sse" sse-connect="{_e(url)}">'
        f'<div id="live" sse-swap="rollout">{fragments["rollout"]}</div>'
        f'<div id="actions" sse-swap="actions">{fragments["actions"]}</div></section>'
    )


def live_fragments(
    row: Mapping[str, Any], verdicts: Sequence[Mapping[str, Any]], csrf: str | None
) -> dict[str, str]:
    """The fragments a stream sends, by event name."""
    running = row.get("rollout") is not None
    return {
        "rollout": rollout_fragment(row, verdicts),
        "actions": _actions(row["name"], csrf) if running else _undo(row["name"], csrf),
    }


def _undo(name: str, csrf: str | None) -> str:
    """Roll back to an earlier revision (blank: the one promoted before the stable one)."""
    if csrf is None:
        return ""
    action = f"/resources/{quote(name, safe='')}/undo"
    return (
        f'<form method="post" action="{_e(action)}" class="action">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        '<label>Roll back to revision <input name="to_revision" maxlength="64" '
        'placeholder="the one before stable"></label> '
        '<button type="submit" name="do" value="undo">Roll back</button></form>'
    )


def _actions(name: str, csrf: str | None) -> str:
    """Promote and abort buttons for a session (its CSRF token in each form); none for a bearer."""
    if csrf is None:
        return ""
    base = f"/resources/{quote(name, safe='')}"
    return "".join(
        f'<form method="post" action="{_e(base)}/{verb}" class="action">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        f'<button type="submit" name="do" value="{verb}">{label}</button></form>'
        for verb, label in (("promote", "Promote"), ("abort", "Abort"))
    )


def rollout_fragment(row: Mapping[str, Any], verdicts: Sequence[Mapping[str, Any]]) -> str:
    """The rollout in progress (step, weights, each verdict so far), or that there is none."""
    rollout = row.get("rollout")
    weights = _weights(row["weights"])
    if rollout is None:
        return (
            '<div data-rollout="none"><p>No rollout in progress: '
            f"stable rev {_e(row['stable'])} · weights {weights}.</p></div>"
        )
    steps = rollout["steps"]
    step = int(rollout["step"])
    weight = steps[min(step, len(steps)) - 1] if steps else 100
    paused = " · <strong>paused</strong>: waiting for promote" if rollout["paused"] else ""
    verdict = rollout.get("verdict")
    said = (
        f"<p>Latest verdict: <strong>{_e(verdict['action'])}</strong> — {_e(verdict['reason'])}</p>"
        if verdict
        else ""
    )
    canary = rollout["canary"]
    items = "".join(
        f"<li>step {int(v['step_index']) + 1} at {int(v['weight'])} %: "
        f"<strong>{_e(v['action'])}</strong> — {_e(v['reason'])}</li>"
        for v in verdicts
    )
    return (
        f'<div data-rollout="running" data-step="{step}" data-to="{_e(rollout["to"])}">'
        f"<p>Rolling out rev {_e(rollout['from'])} → rev {_e(rollout['to'])} "
        f"({_e(rollout['strategy'])}): step <strong>{step} of {len(steps)}</strong> at "
        f"{int(weight)} %{paused} · weights {weights}</p>"
        f"<p>Canary this step: {_count(canary['requests'])} requests, {_count(canary['errors'])} "
        f"errors, p99 {_num(canary['p99_ms'], '.1f', ' ms')}</p>{said}"
        f"<ol class='verdicts'>{items}</ol></div>"
    )


def sse_message(event: str, data: str) -> bytes:
    """One Server-Sent Event; every line of ``data`` becomes a ``data:`` line."""
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()


class StreamSlots:
    """How many streams are open, bounded by :data:`MAX_STREAMS`."""

    def __init__(self, most: int = MAX_STREAMS) -> None:
        self.open = 0
        self.most = most

    def take(self) -> bool:
        if self.open >= self.most:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1


class SlotStream(StreamingResponse):
    """A ``text/event-stream`` response that gives its :class:`StreamSlots` slot back when it
    ends, however it ends (the client gone before the first byte included)."""

    def __init__(self, body: AsyncIterator[bytes], slots: StreamSlots) -> None:
        super().__init__(
            body,
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )
        self._slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slots.give_back()


async def rollout_stream(
    render: Callable[[], Awaitable[Mapping[str, str] | None]],
    tick_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[bytes]:
    """Each fragment of ``render()`` as an event of its name whenever it changes; ends when
    ``render`` gives None (the resource is gone), after :data:`STREAM_LIFETIME_S`, or when the
    client leaves (the response cancels this generator)."""
    started = last_sent = clock()
    sent: dict[str, str] = {}
    while clock() - started < STREAM_LIFETIME_S:
        fragments = await render()
        if fragments is None:
            yield sse_message("gone", "this resource no longer runs here")
            return
        changed = [(name, text) for name, text in fragments.items() if sent.get(name) != text]
        for name, text in changed:
            yield sse_message(name, text)
            sent[name] = text
        if changed:
            last_sent = clock()
        elif clock() - last_sent >= KEEP_ALIVE_S:
            yield b": keep-alive\n\n"
            last_sent = clock()
        await asyncio.sleep(tick_s)

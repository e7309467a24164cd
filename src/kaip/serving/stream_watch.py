"""What the engine relay reads from a streamed answer (:mod:`kaip.serving.relay`): which of its
server-sent events go on to the client, when the first text came and how many tokens it had.

Looks at the events only, on the relay's hot path (once per read from the engine): whole events
go on as they came, never re-encoded; the one event ever held back is the usage-only chunk the
relay asked for when its client did not. Never does I/O.
"""

from __future__ import annotations

import re
import time
from typing import Any, Final

import orjson

_EVENT_END = re.compile(rb"\r?\n\r?\n")
UNREAD_BYTES: Final = 64 * 1024
"""Events a stream's watch keeps unparsed at most (:class:`StreamWatch`)."""


class StreamWatch:
    """What the relay learns from a streamed answer's events, and which of them go on.

    Each event is parsed (orjson) until the first with text; after it, an event whose bytes name
    neither ``"usage"`` nor ``"type"`` can only matter by whether it carries text, and that only
    when the engine sends no usage after all (llama-cpp-python's server does not): such events
    are kept as they came and parsed once :attr:`text_events` is asked for, or once
    :data:`UNREAD_BYTES` of them wait. The counts are those of parsing each at once for every
    engine that writes the keys ``usage`` and ``type`` as plain bytes (JSON would allow
    ``"us\\u0061ge"``; no engine writes that); an engine that sends usage costs two byte scans
    per event after the first text instead of a parse.
    """

    def __init__(self, *, drop_usage_chunk: bool) -> None:
        self.drop_usage_chunk = drop_usage_chunk
        self.first_text_at: float | None = None
        self.usage_tokens: int | None = None
        self._text_events = 0
        self._partial = b""
        self._unread: list[bytes] = []
        self._unread_bytes = 0

    @property
    def text_events(self) -> int:
        """Events with text so far (the stream's token count when the engine sends no usage)."""
        self._parse_unread()
        return self._text_events

    @property
    def unparsed_bytes(self) -> int:
        """Bytes of events kept unparsed now (never over :data:`UNREAD_BYTES`)."""
        return sum(map(len, self._unread))

    def _parse_unread(self) -> None:
        unread, self._unread, self._unread_bytes = self._unread, [], 0
        for event in unread:
            self._parse(event)

    def feed(self, chunk: bytes) -> bytes:
        """The complete events in ``chunk`` (and what came before it) to pass on."""
        if (  # the usual piece after the first text: one whole one-line event ("data: {...}")
            self.first_text_at is not None  # that names neither key (class docstring)
            and not self._partial
            and chunk.find(b"\n") == len(chunk) - 2  # a one-character search: the cheapest
            and chunk.endswith(b"\n\n")
            and b'"usage"' not in chunk
            and b'"type"' not in chunk
        ):  # what _look does with it, without splitting it or a call per piece
            self._unread.append(chunk)
            self._unread_bytes += len(chunk)
            if self._unread_bytes > UNREAD_BYTES:
                self._parse_unread()
            return chunk
        data = self._partial + chunk if self._partial else chunk
        if b"\r" not in data:  # events end in a blank line, "\n\n": split, no pattern search
            end = data.rfind(b"\n\n") + 2
            if end < 2:
                self._partial = data
                return b""
            whole, self._partial = data[:end], data[end:]
            if data.find(b"\n\n") == end - 2:  # one event, the common case
                return whole if self._look(whole) else b""
            events = whole.split(b"\n\n")
            events.pop()  # what follows the last blank line: nothing
            kept = [event for event in events if self._look(event)]
            if len(kept) == len(events):
                return whole  # as usual: every event goes on, as it came
            return b"".join(event + b"\n\n" for event in kept)
        out: list[bytes] = []
        start = 0
        for boundary in _EVENT_END.finditer(data):
            event = data[start : boundary.end()]
            start = boundary.end()
            if self._look(event):
                out.append(event)
        self._partial = data[start:]
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._partial = self._partial, b""
        return rest

    def _look(self, event: bytes) -> bool:
        """Note what ``event`` says; False when it is the usage chunk the client did not ask for."""
        if self.first_text_at is not None and b'"usage"' not in event and b'"type"' not in event:
            self._unread.append(event)  # whether it has text can wait (class docstring)
            self._unread_bytes += len(event)
            if self._unread_bytes > UNREAD_BYTES:
                self._parse_unread()
            return True
        return self._parse(event)

    def _parse(self, event: bytes) -> bool:
        at = event.find(b"data:")  # after an "event:" line in /v1/responses streams
        if at < 0 or b"{" not in event:
            return True
        try:
            doc = orjson.loads(event[at + 5 :])
        except orjson.JSONDecodeError:
            return True
        if not isinstance(doc, dict):
            return True
        usage = doc.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.usage_tokens = usage["completion_tokens"]
        choices = doc.get("choices")
        if isinstance(choices, list):
            for choice in choices:  # a loop, not any(): no generator per event
                if _has_text(choice):
                    self._text_events += 1
                    if self.first_text_at is None:
                        self.first_text_at = time.perf_counter()
                    break
            else:
                if not choices and usage is not None and self.drop_usage_chunk:
                    return False
        elif doc.get("type") == "response.output_text.delta":  # /v1/responses
            self._text_events += 1
            if self.first_text_at is None:
                self.first_text_at = time.perf_counter()
        elif doc.get("type") == "response.completed":
            response = doc.get("response")
            usage = response.get("usage") if isinstance(response, dict) else None
            if isinstance(usage, dict) and isinstance(usage.get("output_tokens"), int):
                self.usage_tokens = usage["output_tokens"]
        return True

    @property
    def tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else self.text_events


def _has_text(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return False
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return bool(delta.get("content"))
    return bool(choice.get("text"))


__all__ = ["UNREAD_BYTES", "StreamWatch"]

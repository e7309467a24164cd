"""On-demand sampling profiler of this process: every thread's stack, a few hundred times a second.

Owns one profile at a time: a thread that reads ``sys._current_frames()`` at ``rate`` Hz for
``seconds`` and, in ``cpu`` mode (the default), keeps a thread's sample only when the thread's
own CPU clock (``pthread_getcpuclockid``) moved since the last one, so threads parked in a wait
do not drown the hot path (``wall`` keeps every sample); it counts each thread's stack
(function, file, line of every frame, outermost first) and renders the counts as speedscope
JSON (a "sampled" profile, https://www.speedscope.app) or as collapsed stacks (``a;b;c 12``
lines, what flamegraph.pl and most viewers read). Nothing runs
and nothing is hooked while not profiling. No ptrace, no signals: it works under the restricted
Pod Security profile. Never captures locals or arguments.

Why not a library: pyinstrument samples only the thread that started it (the model's predict
runs on a worker thread or the event loop), yappi is a deterministic profiler whose overhead
is far above the 10 % budget, and py-spy needs ptrace (CAP_SYS_PTRACE, forbidden by the baseline
and restricted profiles). ``sys._current_frames`` sees every thread at the cost of one walk per
sample.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from types import FrameType
from typing import Any

MAX_SECONDS = 120.0
MAX_RATE_HZ = 250.0
MAX_STACKS = 50_000  # distinct stacks kept; further new ones count under "(truncated)"
MAX_DEPTH = 200

Frame = tuple[str, str, int]  # function, file, first line of the function


@dataclass(frozen=True)
class Profile:
    """What one run of the sampler saw."""

    stacks: Counter[tuple[Frame, ...]]
    samples: int
    seconds: float
    rate_hz: float

    def collapsed(self) -> str:
        """``frame;frame;frame count`` per distinct stack, outermost frame first."""
        lines = []
        for stack, count in self.stacks.most_common():
            lines.append(";".join(f"{f} ({path}:{line})" for f, path, line in stack) + f" {count}")
        return "\n".join(lines) + ("\n" if lines else "")

    def speedscope(self, name: str) -> dict[str, Any]:
        """A speedscope file (https://www.speedscope.app/file-format-schema.json), one profile."""
        index: dict[Frame, int] = {}
        frames: list[dict[str, Any]] = []
        samples: list[list[int]] = []
        weights: list[int] = []
        for stack, count in self.stacks.most_common():
            row = []
            for frame in stack:
                i = index.get(frame)
                if i is None:
                    i = index[frame] = len(frames)
                    frames.append({"name": frame[0], "file": frame[1], "line": frame[2]})
                row.append(i)
            samples.append(row)
            weights.append(count)
        return {
            "$schema": "https://www.speedscope.app/file-format-schema.json",
            "shared": {"frames": frames},
            "profiles": [
                {
                    "type": "sampled",
                    "name": name,
                    "unit": "none",
                    "startValue": 0,
                    "endValue": sum(weights),
                    "samples": samples,
                    "weights": weights,
                }
            ],
            "name": name,
            "exporter": "kaip",
        }

    def top(self, n: int = 10) -> list[tuple[str, int]]:
        """The ``n`` frames present in the most samples (inclusive), as ``function (file:line)``."""
        inclusive: Counter[Frame] = Counter()
        for stack, count in self.stacks.items():
            for frame in set(stack):
                inclusive[frame] += count
        return [(_name(frame), c) for frame, c in inclusive.most_common(n)]

    def top_self(self, n: int = 10) -> list[tuple[str, int]]:
        """The ``n`` innermost Python frames that were running in the most samples."""
        leaves: Counter[Frame] = Counter()
        for stack, count in self.stacks.items():
            if stack:
                leaves[stack[-1]] += count
        return [(_name(frame), c) for frame, c in leaves.most_common(n)]


def _name(frame: Frame) -> str:
    function, path, line = frame
    return f"{function} ({path}:{line})"


class Sampler:
    """One profile at a time (:meth:`run` answers None while another runs)."""

    def __init__(self) -> None:
        self._busy = threading.Lock()

    def run(self, seconds: float, rate_hz: float, mode: str = "cpu") -> Profile | None:
        """Sample every thread but this one for ``seconds``; blocks (call it off the loop)."""
        if not 0 < seconds <= MAX_SECONDS or not 0 < rate_hz <= MAX_RATE_HZ:
            raise ValueError(
                f"seconds must be in (0, {MAX_SECONDS:g}] and rate in (0, {MAX_RATE_HZ:g}] Hz"
            )
        if not self._busy.acquire(blocking=False):
            return None
        try:
            return _sample(seconds, rate_hz, cpu_only=mode == "cpu")
        finally:
            self._busy.release()


def _cpu_time(ident: int) -> float | None:
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, AttributeError, OverflowError):
        return None


def _sample(seconds: float, rate_hz: float, *, cpu_only: bool) -> Profile:
    me = threading.get_ident()
    last_cpu: dict[int, float | None] = {}
    stacks: Counter[tuple[Frame, ...]] = Counter()
    truncated: tuple[Frame, ...] = (("(truncated)", "", 0),)
    interval = 1.0 / rate_hz
    samples = 0
    started = time.monotonic()
    deadline = started + seconds
    next_at = started
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        if now < next_at:
            time.sleep(next_at - now)
            continue
        next_at += interval
        if next_at < now:  # fell behind (a long GIL hold): don't burst to catch up
            next_at = now + interval
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            if cpu_only:
                cpu = _cpu_time(ident)
                before = last_cpu.get(ident)
                last_cpu[ident] = cpu
                if cpu is not None and (before is None or cpu <= before):
                    continue  # idle since the last sample (or not seen before)
            stack = _stack(frame)
            if stack in stacks or len(stacks) < MAX_STACKS:
                stacks[stack] += 1
            else:
                stacks[truncated] += 1
        samples += 1
    return Profile(stacks, samples, time.monotonic() - started, rate_hz)


def _stack(frame: FrameType | None) -> tuple[Frame, ...]:
    out: list[Frame] = []
    while frame is not None and len(out) < MAX_DEPTH:
        code = frame.f_code
        out.append((code.co_qualname, code.co_filename, code.co_firstlineno))
        frame = frame.f_back
    out.reverse()
    return tuple(out)

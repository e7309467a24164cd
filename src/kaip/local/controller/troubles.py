"""What is wrong with the local platform right now, and how long its loop waits before retrying.

The controller's loop never stops on an error: a tick that raises (``state.db`` locked by another
process, a full disk, a bug) is reported, recorded here as a :class:`Trouble` that
``kaip status`` shows, and tried again after a backoff that doubles from the tick period up to
:data:`MAX_BACKOFF_S`. Meanwhile the gateway keeps serving the routes it has. A trouble ends
when the same work succeeds, and its end is reported too.

Worked example (tick period 1 s): failures 1, 2, 3, 4, 5 wait 1, 2, 4, 8, 10 s; a lock held for
35 s is therefore noticed gone at most 10 s after it is released. Reports are made on the first
failure, when the message changes, and at the 10th, 100th, ... failure, so a long outage does
not flood the log. Pure bookkeeping: never does I/O beyond the ``report`` it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_BACKOFF_S = 10.0


@dataclass
class Trouble:
    """One thing that keeps failing: what, the latest message, since when, how many times."""

    what: str
    message: str
    since: float
    """Wall clock, seconds since the epoch."""
    failures: int = 1


class Troubles:
    """The current troubles, keyed by what failed."""

    def __init__(
        self,
        report: Callable[[str], None],
        *,
        period_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._report = report
        self._period_s = period_s
        self._clock = clock
        self._current: dict[str, Trouble] = {}

    def failed(self, what: str, message: str) -> float:
        """Record a failure of ``what``; returns how long to wait before trying again (s)."""
        trouble = self._current.get(what)
        if trouble is None:
            trouble = self._current[what] = Trouble(what, message, self._clock())
            changed = True
        else:
            trouble.failures += 1
            changed = trouble.message != message
            trouble.message = message
        delay = self.backoff(trouble.failures)
        if changed or _is_power_of_ten(trouble.failures):
            self._report(
                f"{what} failed ({_times(trouble.failures)}): {message}; kaip keeps serving and "
                f"tries again in {delay:g} s"
            )
        return delay

    def cleared(self, what: str) -> None:
        """``what`` worked again: forget its trouble (and say so if there was one)."""
        trouble = self._current.pop(what, None)
        if trouble is not None:
            took = self._clock() - trouble.since
            self._report(f"{what} works again after {_times(trouble.failures)} in {took:.0f} s")

    def backoff(self, failures: int) -> float:
        return min(MAX_BACKOFF_S, self._period_s * 2.0 ** (failures - 1))

    def current(self) -> list[Trouble]:
        return sorted(self._current.values(), key=lambda t: t.since)


def _times(failures: int) -> str:
    return "once" if failures == 1 else f"{failures} times in a row"


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1 and n != 0

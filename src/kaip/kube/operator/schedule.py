"""The operator's own schedule: when each resource is looked at again without a change.

Watch events say that something changed; this says when to look again although nothing did:
while a canary runs (its steps are timed), while a temporary fault is retried (with a growing
delay), and now and then as a safety net while a resource waits for its workloads. One thread
sleeps until the earliest due time and hands due keys to a small pool of workers. A settled
resource has no entry, so an operator with nothing to do sleeps.

Nothing here is stored on the resources (no annotations, no finalizer, unlike kopf's timers, which
put a finalizer on every resource they run for and so make its deletion wait for the
operator): a restarted operator looks at every resource once, from the watch's first listing,
and schedules again from what it finds. Never talks to the API itself.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger("kaip.operator")


@dataclass(frozen=True)
class Key:
    """One custom resource, as the schedule knows it."""

    kind: str
    namespace: str
    name: str
    uid: str

    def describe(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class Schedule:
    """Keys due at a time; ``run(key)`` is called (on a worker thread) once each is due.

    :meth:`after` replaces whatever was planned for the key: the latest pass decides.
    """

    def __init__(
        self,
        run: Callable[[Key], None],
        *,
        workers: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run
        self._clock = clock
        self._workers = workers
        self._wake = threading.Condition()
        self._heap: list[tuple[float, int, str]] = []
        self._planned: dict[str, tuple[float, int, Key]] = {}
        self._order = itertools.count()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- planning --

    def after(self, key: Key, delay: float) -> None:
        """Run ``key`` in ``delay`` seconds (instead of whenever it was planned)."""
        with self._wake:
            due, order = self._clock() + max(0.0, delay), next(self._order)
            self._planned[key.uid] = (due, order, key)
            heapq.heappush(self._heap, (due, order, key.uid))
            self._wake.notify()

    def cancel(self, uid: str) -> None:
        """Plan nothing more for ``uid`` (settled, or deleted)."""
        with self._wake:
            self._planned.pop(uid, None)  # its heap entry is skipped when it comes up

    def planned(self, uid: str) -> float | None:
        """Seconds until ``uid`` is due, or None when nothing is planned."""
        with self._wake:
            entry = self._planned.get(uid)
            return None if entry is None else max(0.0, entry[0] - self._clock())

    def __len__(self) -> int:
        with self._wake:
            return len(self._planned)

    def take_due(self) -> list[Key]:
        """Remove and return the keys due now (what the thread hands to the workers)."""
        due: list[Key] = []
        with self._wake:
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                _, order, uid = heapq.heappop(self._heap)
                entry = self._planned.get(uid)
                if entry is not None and entry[1] == order:  # not replaced or cancelled since
                    del self._planned[uid]
                    due.append(entry[2])
        return due

    def _next_wait(self) -> float | None:
        # Drop what was replaced or cancelled, so an idle schedule really sleeps.
        while self._heap:
            due, order, uid = self._heap[0]
            entry = self._planned.get(uid)
            if entry is not None and entry[1] == order:
                return max(0.0, due - self._clock())
            heapq.heappop(self._heap)
        return None

    # -- running --

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="kaip-schedule")
        self._thread = threading.Thread(target=self._loop, name="kaip-schedule", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(5)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _loop(self) -> None:
        while True:
            with self._wake:
                if self._stopped:
                    return
                wait = self._next_wait()
                if wait is None or wait > 0:
                    self._wake.wait(wait)  # None: until something is planned
                    continue
            for key in self.take_due():
                assert self._pool is not None
                self._pool.submit(self._guarded, key)

    def _guarded(self, key: Key) -> None:
        try:
            self._run(key)
        except Exception:  # one resource's bug must not stop everyone else's schedule
            log.exception("%s: the scheduled pass failed", key.describe())

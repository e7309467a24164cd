"""Adaptive micro-batching: concurrent requests merge into one predict call.

Requests are queued with their row count and a *key* (input names, dtypes and trailing shapes):
only requests with the same key are concatenated. A batch is cut when it is full
(``max_batch_size`` rows), or on the first event-loop turn in which no new request arrived, or
when its oldest request has waited ``max_delay`` seconds, whichever comes first. So one client
alone never waits, and under load the loop's natural rhythm forms the batches.

Results are split back by rows. If a batched predict raises, or returns outputs that are not
batch-major, each request of the batch is retried alone so that only the culprit fails. Requests
whose future is already done (timed out, cancelled) are dropped before predicting.

Fast models predict inline on the event loop (a thread hand-off costs more than they do); slow
ones predict on one worker thread, one batch at a time, while the next batch fills. The batcher
never decodes, validates or encodes: its inputs are already valid arrays.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from kaip.errors import OverloadedError
from kaip.protocol.statistics import Execution
from kaip.serving.runtimes.base import Array

Outputs = dict[str, Array]
Predict = Callable[[dict[str, Array]], Outputs]


class Pending:
    """One queued request."""

    __slots__ = ("enqueued", "execution", "future", "inputs", "key", "rows", "started", "trace")

    def __init__(
        self,
        inputs: dict[str, Array],
        rows: int,
        key: Hashable,
        future: asyncio.Future[Outputs],
        trace: Any = None,
    ) -> None:
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.future = future
        self.trace = trace
        self.enqueued = time.perf_counter()
        self.started = 0.0
        self.execution: Execution | None = None
        """The predict call that answered this request (set once it ran)."""


class BatchObserver(Protocol):
    """Told about every predict call (metrics and spans live behind this)."""

    def batch_done(self, batch: list[Pending], started: float, finished: float) -> None: ...


class Batcher:
    def __init__(
        self,
        predict: Predict,
        *,
        max_batch_size: int,
        max_delay: float,
        max_queue: int,
        timeout: float = float("inf"),
        batchable: bool = True,
        inline: bool = True,
        observer: BatchObserver | None = None,
    ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size if batchable else 1
        self.max_delay = max_delay
        self.max_queue = max_queue
        self.timeout = timeout
        self.inline = inline
        self._observer = observer
        self._queue: deque[Pending] = deque()
        self._rows = 0
        self._arrivals = 0
        self._scheduled = False
        self._busy = False
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(
        self, inputs: dict[str, Array], rows: int, key: Hashable, trace: Any = None
    ) -> asyncio.Future[Outputs]:
        """Queue a validated request; raises :class:`OverloadedError` when the queue is full."""
        if len(self._queue) >= self.max_queue:
            raise OverloadedError(
                f"the model's queue is full ({self.max_queue} requests waiting); retry shortly",
                retry_after=1.0,
            )
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        self._queue.append(Pending(inputs, rows, key, future, trace))
        self._rows += rows
        self._arrivals += 1
        if not self._scheduled:
            self._scheduled = True
            self._arrivals = 0
            loop.call_soon(self._flush)
        return future

    def _schedule(self) -> None:
        if not self._scheduled and self._queue and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._busy or not self._queue:
            return
        if (
            self._arrivals
            and self._rows < self.max_batch_size
            and time.perf_counter() - self._queue[0].enqueued < self.max_delay
        ):
            # Requests are still streaming in: give them one more turn to join.
            self._arrivals = 0
            self._schedule()
            return
        self._arrivals = 0
        batch = self._take()
        if not batch:
            return
        if self.inline:
            started = time.perf_counter()
            for p in batch:
                p.started = started
            self._deliver(batch, self._execute(batch), started)
            self._schedule()
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="kaip-predict")
        self._busy = True
        started = time.perf_counter()
        for p in batch:
            p.started = started
        assert self._loop is not None
        done = self._loop.run_in_executor(self._executor, self._execute, batch)
        done.add_done_callback(lambda f: self._threaded_done(batch, f, started))

    def _threaded_done(
        self, batch: list[Pending], done: asyncio.Future[list[Outputs | Exception]], started: float
    ) -> None:
        self._busy = False
        if done.cancelled():  # the executor shut down under it
            results: list[Outputs | Exception] = [OverloadedError("the server is stopping")] * len(
                batch
            )
        elif (error := done.exception()) is not None:
            results = [error if isinstance(error, Exception) else RuntimeError(error)] * len(batch)
        else:
            results = done.result()
        self._deliver(batch, results, started)
        self._schedule()

    def _take(self) -> list[Pending]:
        queue = self._queue
        oldest = time.perf_counter() - self.timeout
        while queue and (queue[0].future.done() or queue[0].enqueued < oldest):
            late = queue.popleft()
            self._rows -= late.rows
            if not late.future.done():
                expire(late.future, self.timeout)
        if not queue:
            return []
        first = queue.popleft()
        self._rows -= first.rows
        batch = [first]
        rows = first.rows
        skipped: list[Pending] = []
        while queue and rows < self.max_batch_size:
            item = queue[0]
            if item.future.done():
                queue.popleft()
                self._rows -= item.rows
                continue
            if item.key != first.key:
                skipped.append(queue.popleft())
                continue
            if rows + item.rows > self.max_batch_size:
                break
            queue.popleft()
            self._rows -= item.rows
            rows += item.rows
            batch.append(item)
        queue.extendleft(reversed(skipped))
        return batch

    def _execute(self, batch: list[Pending]) -> list[Outputs | Exception]:
        """Predict on the batch; each request's :attr:`Pending.execution` says how it went."""
        if len(batch) == 1:
            return [self._alone(batch[0])]
        clock = time.perf_counter
        began = clock()
        merged = {name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs}
        merged_at = clock()
        result = self._call(merged)
        predicted_at = clock()
        total = sum(p.rows for p in batch)
        if isinstance(result, Exception) or not all(
            a.ndim > 0 and a.shape[0] == total for a in result.values()
        ):
            return [self._alone(p) for p in batch]
        out: list[Outputs | Exception] = []
        start = 0
        for p in batch:
            end = start + p.rows
            out.append({name: a[start:end] for name, a in result.items()})
            start = end
        execution = Execution(
            total, merged_at - began, predicted_at - merged_at, clock() - predicted_at, True
        )
        for p in batch:
            p.execution = execution
        return out

    def _alone(self, pending: Pending) -> Outputs | Exception:
        began = time.perf_counter()
        result = self._call(pending.inputs)
        seconds = time.perf_counter() - began
        ok = not isinstance(result, Exception)
        pending.execution = Execution(pending.rows, 0.0, seconds, 0.0, ok)
        return result

    def _call(self, inputs: dict[str, Array]) -> Outputs | Exception:
        try:
            return self._predict(inputs)
        except Exception as exc:
            return exc

    def _deliver(
        self, batch: list[Pending], results: list[Outputs | Exception], started: float
    ) -> None:
        finished = time.perf_counter()
        for p, result in zip(batch, results, strict=True):
            if p.future.done():
                continue
            if isinstance(result, Exception):
                p.future.set_exception(result)
            else:
                p.future.set_result(result)
        if self._observer is not None:
            with contextlib.suppress(Exception):  # instrumentation never breaks a request
                self._observer.batch_done(batch, started, finished)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def expire(future: asyncio.Future[Outputs], timeout: float) -> None:
    """Answer a request that got no result within ``timeout`` seconds with a 503."""
    if future.done():
        return
    future.set_exception(
        OverloadedError(
            f"no answer within the model's timeoutSeconds ({timeout:g} s); retry later or "
            "raise serve.timeoutSeconds",
            retry_after=1.0,
        )
    )

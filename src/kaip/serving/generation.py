"""Text generation for the OpenAI routes: the bounded threads it runs on, its end, and the
completion it becomes (one JSON document, or SSE chunks).

The rules, in the order a generation meets them:

- It runs on a :class:`GenerationPool`: a fixed number of daemon threads of its own
  (``KAIP_SERVING__GENERATION_WORKERS``), never the loop's default executor, so slow or abandoned
  generations cannot starve embeddings or anything else. At most ``max_waiting`` requests wait
  for a thread; more get 503.
- It ends at whichever comes first: the runtime stops, ``max_tokens`` pieces came, a stop string
  appeared, the model's ``serve.timeoutSeconds`` passed since the request arrived (a 503 before
  a whole answer; an error event ends a stream), or the client went away (the route cancels it).
  Ending tells the thread to stop: it does at the runtime's next piece, and closes the runtime's
  iterator. A thread runs at most :data:`WINDOW` pieces ahead of its reader.
- Stop strings are matched incrementally (:class:`StopMatcher`): a piece is searched together
  with only the last ``len(longest stop) - 1`` characters before it, so each piece costs its own
  length, never the length of everything generated so far. Text that may be the beginning of a
  stop string is held back until the next piece tells, so the answer ends exactly where the
  stop string begins, even when it spans pieces.
- A thread whose generation produced nothing for ``stall_seconds`` is stalled; when every thread
  is stalled the pool is wedged (:meth:`GenerationPool.wedged`), and ``/v2/health/live`` says so
  with a 503 so that a liveness probe restarts the replica.

Never parses requests (:mod:`kaip.serving.openai_api` does) and never touches OIP tensors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from typing import Any

import orjson

from kaip.errors import KaipError, OverloadedError
from kaip.serving.asgi import Send, respond
from kaip.serving.metrics import GenAIMetrics
from kaip.serving.runtimes.base import GenerationParams, TextGenerator

log = logging.getLogger(__name__)
WINDOW = 64  # pieces a generation thread may produce before its reader took them
_POLL_S = 0.1  # how often a thread blocked on a slow reader checks whether it was cancelled
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
]


# -- the threads --------------------------------------------------------------------------------


class _Job:
    """One generation as the pool sees it: cancelled by the loop, progress stamped by its thread."""

    __slots__ = ("cancelled", "progress", "running")

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.progress = 0.0
        self.running = False


_PIECE, _END, _ERROR = 0, 1, 2


class PieceStream:
    """The pieces of one generation, from its thread to the event loop (an async iterator)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Callable[[], float]) -> None:
        self.job = _Job()
        self._loop = loop
        self._clock = clock
        self._queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        self._room = threading.Semaphore(WINDOW)

    def __aiter__(self) -> PieceStream:
        return self

    async def __anext__(self) -> str:
        kind, value = await self._queue.get()
        if kind == _PIECE:
            self._room.release()
            return value  # type: ignore[no-any-return]
        if kind == _ERROR:
            raise value
        raise StopAsyncIteration

    def cancel(self) -> None:
        self.job.cancelled.set()

    # -- the thread's side ------------------------------------------------------------------------
    def put(self, piece: str) -> bool:
        """Hand one piece over; False when the generation was cancelled (stop producing)."""
        job = self.job
        while not self._room.acquire(timeout=_POLL_S):
            if job.cancelled.is_set():
                return False
            job.progress = self._clock()  # waiting on a slow reader is not a stall
        return not job.cancelled.is_set() and self._post(_PIECE, piece)

    def end(self, error: BaseException | None) -> None:
        self._post(_END, None) if error is None else self._post(_ERROR, error)

    def _post(self, kind: int, value: Any) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: the server is stopping
            return False
        return True


class GenerationPool:
    """A fixed number of daemon threads running generations, and whether they are wedged.

    Daemon threads, so that a runtime stuck inside ``generate`` never keeps a stopping server
    alive; they start on first use.
    """

    def __init__(
        self,
        workers: int,
        *,
        max_waiting: int,
        stall_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.workers = workers
        self.max_waiting = max_waiting
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._tasks: queue.SimpleQueue[tuple[Callable[[], Iterable[str]], PieceStream] | None] = (
            queue.SimpleQueue()
        )
        self._jobs: set[_Job] = set()  # submitted and not finished: waiting or running
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def run(self, produce: Callable[[], Iterable[str]]) -> PieceStream:
        """Start ``produce()`` on a thread; its pieces come out of the returned stream."""
        with self._lock:
            if len(self._jobs) >= self.workers + self.max_waiting:
                raise OverloadedError(
                    f"all {self.workers} generation threads are busy and {self.max_waiting} "
                    "requests are waiting; retry shortly",
                    retry_after=1.0,
                )
            stream = PieceStream(asyncio.get_running_loop(), self._clock)
            self._jobs.add(stream.job)
            if not self._threads:
                self._start_threads()
        self._tasks.put((produce, stream))
        return stream

    def wedged(self) -> str | None:
        """Why the pool cannot make progress (every thread stalled), or None when it can."""
        now = self._clock()
        with self._lock:
            running = [job for job in self._jobs if job.running]
        if len(running) < self.workers:
            return None
        if all(now - job.progress > self.stall_seconds for job in running):
            return (
                f"all {self.workers} generation threads have produced nothing for over "
                f"{self.stall_seconds:g} s"
            )
        return None

    def close(self) -> None:
        """Let idle threads exit; busy ones are daemons and end with the process."""
        for _ in self._threads:
            self._tasks.put(None)

    def _start_threads(self) -> None:
        for index in range(self.workers):
            thread = threading.Thread(
                target=self._serve, name=f"kaip-generate-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _serve(self) -> None:
        while (task := self._tasks.get()) is not None:
            self._work(*task)

    def _work(self, produce: Callable[[], Iterable[str]], stream: PieceStream) -> None:
        job = stream.job
        job.progress = self._clock()
        job.running = True
        try:
            if not job.cancelled.is_set():
                pieces = iter(produce())
                try:
                    for piece in pieces:
                        job.progress = self._clock()
                        if not stream.put(str(piece)):
                            break
                finally:
                    close = getattr(pieces, "close", None)
                    if close is not None:
                        close()
            stream.end(None)
        except BaseException as exc:
            stream.end(exc)
        finally:
            job.running = False
            with self._lock:
                self._jobs.discard(job)


# -- stop strings ---------------------------------------------------------------------------------


class StopMatcher:
    """Text that arrives piece by piece, let out up to where the first stop string begins.

    Holds back the end of the text that could still become a stop string (at most
    ``len(longest stop) - 1`` characters), so a stop string that spans pieces is cut exactly:
    nothing of it was let out before it was complete.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stops)
        self._held = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """The text that may go out now, and whether a stop string appeared (the text then ends
        where it begins, and nothing more may go out)."""
        window = self._held + piece
        found = [i for s in self._stops if (i := window.find(s)) >= 0]
        if found:
            self._held = ""
            return window[: min(found)], True
        hold = max(_stop_prefix_at_end(window, s) for s in self._stops)
        self._held = window[len(window) - hold :]
        return window[: len(window) - hold], False

    def flush(self) -> str:
        """What was held back, once no more text comes (it never became a stop string)."""
        held, self._held = self._held, ""
        return held


def _stop_prefix_at_end(text: str, stop: str) -> int:
    """The length of the longest proper beginning of ``stop`` that ``text`` ends with."""
    first = stop[0]
    start = max(0, len(text) - len(stop) + 1)
    while (at := text.find(first, start)) >= 0:
        if stop.startswith(text[at:]):
            return len(text) - at
        start = at + 1
    return 0


# -- one completion -----------------------------------------------------------------------------


class Generation:
    """One completion: runs the pieces, applies the rules above, records the GenAI metrics."""

    def __init__(
        self,
        *,
        model: str,
        generator: TextGenerator,
        pool: GenerationPool,
        genai: GenAIMetrics,
        prompt: str,
        params: GenerationParams,
        chat: bool,
        timeout: float,
        served_name: str | None = None,
    ) -> None:
        self.model = model
        self.served_name = served_name or model
        """The name the client asked for (one of ``serve.names``); answers carry it."""
        self.generator = generator
        self.pool = pool
        self.genai = genai
        self.prompt = prompt
        self.params = params
        self.chat = chat
        self.timeout = timeout
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.tokens = 0
        self.finish_reason = "stop"
        self.started = time.perf_counter()
        self.first_token: float | None = None

    @property
    def operation(self) -> str:
        return "chat" if self.chat else "text_completion"

    def start(self) -> PieceStream:
        """Hand the generation to a thread (503 when the pool is full)."""
        generator, prompt, params = self.generator, self.prompt, self.params
        return self.pool.run(lambda: generator.generate(prompt, params))

    async def pieces(self, stream: PieceStream) -> AsyncGenerator[str]:
        """The text pieces up to the first stop string or ``max_tokens``; the caller cancels
        ``stream`` when it is done with them, however that happens."""
        params = self.params
        matcher = StopMatcher(params.stop) if params.stop else None
        async for piece in stream:
            if self.first_token is None:
                self.first_token = time.perf_counter()
            self.tokens += 1
            if matcher is not None:
                piece, stopped = matcher.feed(piece)
                if stopped:
                    yield piece
                    return
            yield piece
            if self.tokens >= params.max_tokens:
                self.finish_reason = "length"
                break
        if matcher is not None:
            yield matcher.flush()

    def timed_out_message(self) -> str:
        return (
            f"no complete answer within the model's timeoutSeconds ({self.timeout:g} s); ask for "
            "fewer tokens or raise serve.timeoutSeconds"
        )

    def record(self, error: str = "") -> None:
        ttft = None if self.first_token is None else self.first_token - self.started
        self.genai.record(
            self.operation,
            self.model,
            time.perf_counter() - self.started,
            ttft=ttft,
            tokens=self.tokens,
            error_type=error,
        )

    def usage(self) -> dict[str, int]:
        prompt_tokens = self.generator.count_tokens(self.prompt)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": self.tokens,
            "total_tokens": prompt_tokens + self.tokens,
        }

    async def text(self) -> str:
        """The whole text, generated to its end within the model's timeout (a 503 past it);
        the metrics recorded however it ends."""
        stream = self.start()
        try:
            async with (
                asyncio.timeout(self.timeout),
                contextlib.aclosing(self.pieces(stream)) as it,
            ):
                text = "".join([p async for p in it])
        except TimeoutError as exc:
            self.record(type(exc).__name__)
            raise OverloadedError(self.timed_out_message(), retry_after=1.0) from None
        except asyncio.CancelledError:
            self.record("cancelled")
            raise
        except Exception as exc:
            self.record(type(exc).__name__)
            raise
        finally:
            stream.cancel()
        self.record()
        return text

    async def whole(self, send: Send) -> None:
        text = await self.text()
        if self.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": self.finish_reason,
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None}
            choice["finish_reason"] = self.finish_reason
        doc = {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.served_name,
            "choices": [choice],
            "usage": self.usage(),
        }
        await respond(send, 200, orjson.dumps(doc))

    def _chunk(self, delta: dict[str, Any] | str, finish: str | None) -> bytes:
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
            kind = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish}
            kind = "text_completion"
        doc = {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.served_name,
            "choices": [choice],
        }
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    async def stream(self, send: Send, *, include_usage: bool) -> None:
        stream = self.start()
        error = ""
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            if self.chat:
                await _event(send, self._chunk({"role": "assistant", "content": ""}, None))
            async with (
                asyncio.timeout(self.timeout),
                contextlib.aclosing(self.pieces(stream)) as it,
            ):
                async for piece in it:
                    if piece:
                        delta = {"content": piece} if self.chat else piece
                        await _event(send, self._chunk(delta, None))
            await _event(send, self._chunk({} if self.chat else "", self.finish_reason))
            if include_usage:
                doc: dict[str, Any] = {
                    "id": self.id,
                    "object": "chat.completion.chunk" if self.chat else "text_completion",
                    "created": self.created,
                    "model": self.served_name,
                    "choices": [],
                    "usage": self.usage(),
                }
                await _event(send, b"data: " + orjson.dumps(doc) + b"\n\n")
        except TimeoutError as exc:
            error = type(exc).__name__
            await _event(send, b"data: " + error_document(self.timed_out_message()) + b"\n\n")
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        except Exception as exc:
            error = type(exc).__name__
            log.exception("generation on model %s failed mid-stream", self.model)
            message = exc.message if isinstance(exc, KaipError) else "generation failed"
            await _event(send, b"data: " + error_document(message) + b"\n\n")
        finally:
            stream.cancel()
            self.record(error)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def error_document(
    message: str, kind: str = "server_error", code: str | None = None, *, param: str | None = None
) -> bytes:
    """An OpenAI error object (``param``: the request field it is about)."""
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


async def _event(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})

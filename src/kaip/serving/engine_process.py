"""The engine a replica relays to (``serve.engine``), as a process: started as the replica's
child, or (in a pod) found in the engine's own container; waited for until healthy, then
watched. The relay itself is :mod:`kaip.serving.relay`'s.

The rules, in the order a replica meets them:

- **Start.** The engine runs as this process's child, in a session of its own (the SIGTERM that
  starts a replica's drain must not stop the engine under the requests still streaming; the
  replica stops it once drained) and with a parent-death signal (a replica killed, even by
  SIGKILL, takes its engine with it). Its output goes to this process's stderr, line by line,
  prefixed ``[ENGINE]``; the last :data:`TAIL_LINES` lines are kept for error messages.
- **Wait.** The replica is not ready until ``GET {health_path}`` on the engine answers 200. While
  it waits it logs its progress every :data:`PROGRESS_EVERY_S`; if the engine exits first, or is
  not healthy within ``serve.engine.startupSeconds``, the replica fails with an
  :class:`~kaip.errors.EngineError` naming the engine, its exit and its last lines.
- **Watch.** Once ready, an engine that exits makes the replica unready at once (readiness 503,
  every request a 502) and the replica exits with code 1, saying why: the supervisor
  (``kaip up``, the kubelet) restarts it.

Never relays a request and never reads an answer's body.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Final

import httpx
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from kaip.errors import EngineError
from kaip.serving.engines import EngineProfile
from kaip.serving.metrics import ServerMetrics
from kaip.serving.relay import EngineRoutes
from kaip.spec.engine import Engine

log = logging.getLogger(__name__)
TAIL_LINES: Final = 20
PROGRESS_EVERY_S: Final = 15.0
HEALTH_POLL_S: Final = 0.25
STOP_GRACE_S: Final = 10.0
WATCH_EVERY_S: Final = 2.0
UNHEALTHY_AFTER: Final = 3
_PR_SET_PDEATHSIG = 1
_REPLICA_ONLY: Final = frozenset({"PORT", "HOST"})


# -- the engine process -------------------------------------------------------------------------


class EngineProcess:
    """The engine's server, a child of this replica (module docstring: Start, Wait, Watch)."""

    def __init__(self, engine: EngineProfile, argv: Sequence[str], port: int) -> None:
        self.engine = engine
        self.argv = list(argv)
        self.port = port
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    async def start(self) -> None:
        log.info("starting engine %s: %s", self.engine.name, " ".join(self.argv))
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                env=engine_environment(os.environ),
            )
        except OSError as exc:
            raise EngineError(
                f"cannot start engine {self.engine.name!r} ({self.argv[0]}): "
                f"{exc.strerror or exc}; {_install_hint(self.engine.name)}"
            ) from None
        self._reader = asyncio.get_running_loop().create_task(self._copy_output())

    async def _copy_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        prefix = f"[{self.engine.name}] "
        stream = self._process.stdout
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the stream's limit: take what is there
                line = await stream.read(64 * 1024)
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            self.tail.append(text)
            sys.stderr.write(prefix + text + "\n")

    async def wait_healthy(self, client: httpx.AsyncClient, startup_seconds: float) -> None:
        """Return once the engine answers its health path; EngineError if it exits or takes
        longer than ``startup_seconds``."""
        started = time.monotonic()
        next_note = started + PROGRESS_EVERY_S
        url = self.url + self.engine.health_path
        while True:
            if self.returncode is not None:
                await self._drain_output()
                raise EngineError(self._exit_message("exited before it was healthy"))
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url, timeout=5.0)).status_code == 200:
                    log.info(
                        "engine %s is healthy after %.1f s",
                        self.engine.name,
                        time.monotonic() - started,
                    )
                    return
            now = time.monotonic()
            if now - started > startup_seconds:
                await self.stop()
                raise EngineError(
                    f"engine {self.engine.name!r} was not healthy ({url}) within "
                    f"serve.engine.startupSeconds ({startup_seconds:g} s); raise it if the "
                    f"model takes longer to load. {self._tail_text()}"
                )
            if now >= next_note:
                log.info(
                    "waiting for engine %s to be healthy: %.0f s of %g s",
                    self.engine.name,
                    now - started,
                    startup_seconds,
                )
                next_note = now + PROGRESS_EVERY_S
            await asyncio.sleep(HEALTH_POLL_S)

    async def wait(self) -> int:
        assert self._process is not None
        code = await self._process.wait()
        await self._drain_output()
        return code

    async def _drain_output(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), 2.0)

    def exit_message(self) -> str:
        return self._exit_message("exited")

    def _exit_message(self, what: str) -> str:
        code = self.returncode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"with code {code}"
        return f"engine {self.engine.name!r} {what} ({how}). {self._tail_text()}"

    def _tail_text(self) -> str:
        if not self.tail:
            return "It printed nothing."
        return "Its last lines:\n  " + "\n  ".join(self.tail)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_GRACE_S`."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def engine_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The replica's environment less what names the replica's own address: ``PORT`` and
    ``HOST`` (``kaip up`` sets PORT for the replica, and llama_cpp.server's settings read it
    over its ``--port`` flag)."""
    return {k: v for k, v in environ.items() if k not in _REPLICA_ONLY}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM this process when its parent (the replica) dies."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _install_hint(name: str) -> str:
    return {
        "vllm": "install vLLM where the replica runs (pip install vllm; it needs a GPU)",
        "sglang": "install SGLang where the replica runs (pip install 'sglang[all]')",
        "llama-server": "pip install 'kaip[llm-server]'",
    }.get(name, "install the engine")


def engine_port(requested: int | None) -> int:
    """``serve.engine.port``, or a free loopback port."""
    if requested is not None:
        return requested
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- lifecycle ----------------------------------------------------------------------------------


class EngineHistograms(Collector):
    """The engine's own latency histograms (:data:`kaip.serving.engines.ENGINE_HISTOGRAMS`), as
    the last scrape of it found them."""

    def __init__(self, routes: EngineRoutes, model: str, revision: str) -> None:
        self.routes = routes
        self.ids = [model, revision]

    def collect(self) -> Iterator[Metric]:
        for name, histogram in sorted(self.routes.snapshot.histograms.items()):
            family = HistogramMetricFamily(
                name,
                f"The engine's own {name.removeprefix('kaip_engine_')}, as it measures it.",
                labels=["model", "revision"],
            )
            family.add_metric(self.ids, histogram.cumulative(), histogram.sum)
            yield family


def attach_metrics(routes: EngineRoutes, metrics: ServerMetrics) -> None:
    """Show the engine's translated metrics on the replica's ``/metrics``."""
    metrics.engine = lambda: routes.snapshot.stats
    metrics.queue_depth = lambda: routes.snapshot.stats.get("waiting", 0.0)
    metrics.registry.register(EngineHistograms(routes, metrics.model, metrics.revision))


async def start_child(
    routes: EngineRoutes, spec: Engine, model_path: str, served_name: str
) -> EngineProcess:
    """Start the engine as this replica's child and return it once healthy (EngineError if it
    exits first or is not healthy within ``spec.startupSeconds``)."""
    port = engine_port(spec.port)
    argv = routes.engine.command(model_path, served_name, port, spec.args, pod=False)
    process = EngineProcess(routes.engine, argv, port)
    await process.start()
    try:
        await process.wait_healthy(routes.client, spec.startup_seconds)
    except BaseException:  # cancelled (the replica stops) or never healthy: it goes too
        await process.stop()
        raise
    routes.use(process.url)
    return process


async def wait_external(routes: EngineRoutes, url: str, startup_seconds: float) -> None:
    """Wait for an engine this replica did not start (a pod's engine container) to be healthy."""
    started = time.monotonic()
    next_note = started + PROGRESS_EVERY_S
    health = url + routes.engine.health_path
    while not await _healthy(routes.client, health):
        now = time.monotonic()
        if now - started > startup_seconds:
            raise EngineError(
                f"engine {routes.engine.name!r} at {url} was not healthy within "
                f"serve.engine.startupSeconds ({startup_seconds:g} s); see its container's log"
            )
        if now >= next_note:
            log.info("waiting for engine %s at %s: %.0f s", routes.engine.name, url, now - started)
            next_note = now + PROGRESS_EVERY_S
        await asyncio.sleep(HEALTH_POLL_S)
    routes.use(url)


async def watch_external(routes: EngineRoutes, url: str, on_change: Callable[[bool], None]) -> None:
    """Follow an external engine's health for ever: ``on_change(False)`` after
    :data:`UNHEALTHY_AFTER` failed checks in a row, ``on_change(True)`` once it answers again
    (its container restarted)."""
    health = url + routes.engine.health_path
    failures = 0
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        if await _healthy(routes.client, health):
            if routes.failed is not None:
                log.info("engine %s at %s is healthy again", routes.engine.name, url)
                routes.failed = None
                on_change(True)
            failures = 0
            continue
        failures += 1
        if failures == UNHEALTHY_AFTER and routes.failed is None:
            routes.failed = f"engine {routes.engine.name!r} at {url} does not answer {health}"
            log.error("%s; the replica is not ready", routes.failed)
            on_change(False)


async def _healthy(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(url, timeout=5.0)).status_code == 200
    except httpx.HTTPError:
        return False


__all__ = [
    "EngineHistograms",
    "EngineProcess",
    "attach_metrics",
    "engine_environment",
    "engine_port",
    "start_child",
    "wait_external",
    "watch_external",
]

"""Run the model server: bind, serve while the model loads, report ready, drain on SIGTERM.

The socket is bound first (``port 0`` picks a free port) and the HTTP server starts at once, so
``/v2/health/live`` answers while the model loads; ``/v2/health/ready`` turns 200 only after it
loaded. Then one JSON line ``{"event": "ready", "port": ...}`` goes to stdout (and the port to
``--port-file`` when given), which is what the local supervisor waits for.

On SIGTERM or SIGINT it drains in two steps, so that clients holding keep-alive connections lose
nothing (on Kubernetes a pod's connections outlive its removal from the Service's endpoints):

1. for up to ``settings.serving.drain_seconds`` it keeps serving, with ``Connection: close`` on
   every response (each client finishes its request here and reconnects to another replica) and
   ``/v2/health/ready`` at 503; it moves on as soon as no connection is left;
2. then it stops accepting, closes idle connections, lets in-flight requests finish for up to
   ``settings.serving.graceful_shutdown_seconds`` and returns 0.

A second signal skips what is left of the first step.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from kaip.errors import ConfigError, KaipError
from kaip.serving import artifacts, engine_process, engines, runtimes
from kaip.serving.app import ServingApp
from kaip.serving.dataplane import ServedModel
from kaip.serving.metrics import ServerMetrics
from kaip.serving.protocol import bounded_protocol
from kaip.serving.relay import EngineRoutes
from kaip.serving.tracing import Tracing
from kaip.settings import Settings
from kaip.spec import Model, SpecDocument, load_paths
from kaip.telemetry.spans import SpanRecorder

log = logging.getLogger("kaip.serving")


@dataclass(frozen=True)
class ServeOptions:
    spec_path: Path
    model: str
    host: str
    port: int
    revision: str = "1"
    port_file: Path | None = None
    spans: SpanRecorder | None = None  # where spans go (None: tracing is off)
    profile_token: str | None = None  # POST /_kaip/profile needs it; None: profiling is off
    engine_url: str | None = None
    """serve.engine: relay to the engine already serving here (a pod's engine container)
    instead of starting it as a child."""


def find_model(spec_path: Path, name: str) -> SpecDocument:
    """The Model named ``name`` in the spec file or directory at ``spec_path``."""
    specs = load_paths([spec_path])
    doc = specs.find("Model", name)
    if doc is None:
        names = [d.resource.metadata.name for d in specs.of_kind("Model")]
        found = ", ".join(names) if names else "none"
        raise ConfigError(f"no Model named {name!r} in {spec_path} (Models there: {found})")
    return doc


def build(
    options: ServeOptions, settings: Settings
) -> tuple[ServingApp, SpecDocument, EngineRoutes | None]:
    """The app for ``options.model`` with its model not loaded yet (see :func:`load`), and the
    relay to its engine when it has one (``serve.engine``)."""
    doc = find_model(options.spec_path, options.model)
    assert isinstance(doc.resource, Model)
    spec = doc.resource.spec
    names = doc.resource.served_names
    metrics = ServerMetrics(options.model, options.revision)
    tracing = None
    if options.spans is not None:
        tracing = Tracing(options.spans, options.model, options.revision)
    served = ServedModel(
        options.model,
        options.revision,
        max_batch_size=spec.serve.batching.max_batch_size,
        max_delay=spec.serve.batching.max_delay_ms / 1000,
        max_queue=settings.serving.max_queue,
        timeout=spec.serve.timeout_seconds,
        metrics=metrics,
        tracing=tracing,
        names=names,
    )
    routes = None
    if spec.serve.engine is not None:
        routes = EngineRoutes(
            model=options.model,
            names=names,
            metrics=metrics,
            engine=engines.profile(spec.serve.engine.name),
            max_request_bytes=spec.serve.max_request_bytes,
            timeout=spec.serve.timeout_seconds,
        )
        engine_process.attach_metrics(routes, metrics)
        served.served_by = spec.serve.engine.name
    app = ServingApp(
        served,
        max_request_bytes=spec.serve.max_request_bytes,
        openai="openai" in spec.serve.protocols,
        max_tokens=spec.serve.token_cap,
        generation_workers=settings.serving.generation_workers,
        max_waiting=settings.serving.max_queue,
        profile_token=options.profile_token,
        openai_handler=routes,
    )
    if routes is not None:
        app.refresh_metrics = routes.refresh_metrics
    return app, doc, routes


def load(app: ServingApp, doc: SpecDocument, settings: Settings) -> None:
    """Fetch and verify the artifact, then load the model (blocking)."""
    assert isinstance(doc.resource, Model)
    artifact = doc.resource.spec.artifact
    path = artifact_path(doc, settings)
    compile_linear = settings.serving.compile_linear
    app.model.load(runtimes.create(artifact, path, compile_linear=compile_linear))


def artifact_path(doc: SpecDocument, settings: Settings) -> Path:
    """The Model's artifact on this machine, fetched and verified first (blocking)."""
    assert isinstance(doc.resource, Model)
    return artifacts.resolve(
        doc.resource.spec.artifact,
        doc.base_dir,
        settings.serving.artifact_cache_dir,
        artifacts.fetch_limits(settings.serving),
    )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(options: ServeOptions, settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code."""
    app, doc, routes = build(options, settings)
    sock = bind(options.host, options.port)
    limits = settings.serving.http
    config = uvicorn.Config(
        app,
        http=bounded_protocol(limits),  # uvicorn's httptools protocol, with bounds it lacks
        timeout_keep_alive=limits.idle_timeout_seconds,  # type: ignore[arg-type]  # a float works
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,  # nothing here reads the client address: skip that middleware
        timeout_graceful_shutdown=int(settings.serving.graceful_shutdown_seconds),
        backlog=2048,
    )
    server = _DrainingServer(config, app, settings.serving.drain_seconds)
    exit_code = 0

    async def main() -> None:
        nonlocal exit_code
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        engine: _Engine | None = None
        started = True
        try:
            if routes is None:
                await loop.run_in_executor(None, load, app, doc, settings)
            else:
                engine = _Engine(app, routes, doc, settings, options.engine_url)
                started = await _unless_stopped(engine.start(), serving)
        except KaipError as exc:
            log.error("model %s failed to load: %s", options.model, exc.message)
            exit_code = exc.exit_code
            server.should_exit = True
        else:
            if started:
                # Everything loaded so far (libraries, the model) lives as long as the process:
                # move it out of the collector's view, so that a full collection scans only what
                # requests allocate instead of stalling every request for ~100 ms.
                gc.collect()
                gc.freeze()
                app.model.mark_ready()
                port = sock.getsockname()[1]
                _announce(options, port, app.model.names)
                if engine is not None:
                    engine.watch(server, lambda code: _set_exit(code))
            else:  # SIGTERM while it waited for its engine: no need to wait on
                log.info("stopped while it waited for its engine")
        await serving
        if engine is not None:
            await engine.stop()
        app.close()

    def _set_exit(code: int) -> None:
        nonlocal exit_code
        exit_code = code

    # uvicorn re-raises the signal it caught once it has drained; a no-op handler makes that
    # re-raise harmless so that a graceful stop exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    run_loop(main())
    return exit_code


async def _unless_stopped(start: Coroutine[Any, Any, None], serving: asyncio.Task[None]) -> bool:
    """Await ``start`` unless the server stops first (a SIGTERM while a replica waits minutes
    for its engine must stop it, not wait on): True once it finished, False when it was
    cancelled for the stop. Its errors propagate."""
    starting = asyncio.ensure_future(start)
    await asyncio.wait({starting, serving}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done():
        starting.result()
        return True
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    return False


class _Engine:
    """The Model's engine (``serve.engine``) as this replica runs it: a child it starts and
    stops, or (``engine_url``) an engine beside it that it only waits for and watches."""

    def __init__(
        self,
        app: ServingApp,
        routes: EngineRoutes,
        doc: SpecDocument,
        settings: Settings,
        url: str | None,
    ) -> None:
        assert isinstance(doc.resource, Model) and doc.resource.spec.serve.engine is not None
        self.app, self.routes, self.doc, self.settings, self.url = app, routes, doc, settings, url
        self.spec = doc.resource.spec.serve.engine
        self.child: engine_process.EngineProcess | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.url is not None:
            await engine_process.wait_external(self.routes, self.url, self.spec.startup_seconds)
            return
        loop = asyncio.get_running_loop()
        path = await loop.run_in_executor(None, artifact_path, self.doc, self.settings)
        self.child = await engine_process.start_child(
            self.routes, self.spec, str(path), self.app.model.names[0]
        )

    def watch(self, server: uvicorn.Server, set_exit: Callable[[int], None]) -> None:
        """A child that exits takes the replica down (not ready at once, exit 1); an external
        engine that stops answering makes it not ready until it answers again."""
        model = self.app.model
        if self.child is None:
            assert self.url is not None

            def changed(healthy: bool) -> None:
                model.ready = healthy
                model.metrics.ready.set(1 if healthy else 0)

            self._watcher = asyncio.get_running_loop().create_task(
                engine_process.watch_external(self.routes, self.url, changed)
            )
            return
        child = self.child

        async def follow() -> None:
            await child.wait()
            if server.should_exit:
                return  # the replica is stopping and stopped it
            message = child.exit_message()
            self.routes.failed = message
            model.ready = False
            model.metrics.ready.set(0)
            log.error("%s; the replica is not ready and stops", message)
            set_exit(1)
            server.should_exit = True

        self._watcher = asyncio.get_running_loop().create_task(follow())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        if self.child is not None:
            await self.child.stop()
        await self.routes.aclose()


class _DrainingServer(uvicorn.Server):
    """uvicorn's server with step 1 of the drain (module docstring) before its own shutdown."""

    def __init__(self, config: uvicorn.Config, app: ServingApp, drain_seconds: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_seconds = drain_seconds
        self.drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: it only sets state, which on_tick (every 0.1 s) acts on.
        if self.drain_until is None and self.drain_seconds > 0 and not self.should_exit:
            self.app.draining = True
            self.drain_until = time.monotonic() + self.drain_seconds
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        until, open_connections = self.drain_until, len(self.server_state.connections)
        drained = until is not None and (not open_connections or time.monotonic() >= until)
        if drained and not self.should_exit:
            log.info("drained; stopping (%d connections still open)", open_connections)
            self.should_exit = True
        return await super().on_tick(counter)


def _announce(options: ServeOptions, port: int, names: tuple[str, ...]) -> None:
    host = f"[{options.host}]" if ":" in options.host else options.host
    line = {
        "event": "ready",
        "model": options.model,
        "names": list(names),
        "revision": options.revision,
        "host": options.host,
        "port": port,
        "url": f"http://{host}:{port}",
        "pid": os.getpid(),
    }
    if options.port_file is not None:
        tmp = options.port_file.with_name(options.port_file.name + ".tmp")
        tmp.write_text(f"{port}\n")
        tmp.replace(options.port_file)
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed (uvicorn[standard] brings it), else on
    asyncio's loop: the replicas' loop and ``kaip up``'s, whose gateway relays every streamed
    chunk (uvloop's transports take about a third less CPU per relayed token, bench/README.md)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        asyncio.run(main)
        return
    uvloop.run(main)

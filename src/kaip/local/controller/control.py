"""The control port of ``kaip up``: its own listener for the admin API, apart from all traffic.

The gateway's port serves models and Apps, which may run any code a spec names and set any
cookie; the control API must not share an origin with them, so it listens on a port of its own
(default 8081) on 127.0.0.1, served by uvicorn in the controller's event loop: HTTP/1.1 through
h11 with headers bounded to :data:`MAX_HEADER_BYTES`, idle connections closed after
:data:`KEEP_ALIVE_S`, and at most :data:`MAX_CONNECTIONS` at once (503 beyond). Every request
goes through :class:`~kaip.local.controller.guard.ControlGuard` first.

The controller's loop owns the process's signals: this server never installs handlers of its
own; :meth:`ControlServer.stop` ends it. Never routes traffic and never decides anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from kaip.local.controller.guard import ASGIApp

MAX_HEADER_BYTES = 64 * 1024
KEEP_ALIVE_S = 5
MAX_CONNECTIONS = 64


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handlers (``kaip up``'s loop stops it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ControlServer:
    """Serves ``app`` on ``host:port`` (``port=0`` picks a free one) until :meth:`stop`."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 8081) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Bind and serve; returns the bound port. Raises OSError if the port is taken."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            http="h11",
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            lifespan="off",
            ws="none",
            access_log=False,
            log_config=None,
            log_level="warning",
            server_header=False,
            date_header=False,
            proxy_headers=False,
            timeout_keep_alive=KEEP_ALIVE_S,
            limit_concurrency=MAX_CONNECTIONS,
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise OSError(f"the control port {self._host}:{port} stopped while starting")
            await asyncio.sleep(0.01)
        self._port = port
        return port

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._server, self._task = None, None

"""Fixtures for contract tests: real replica processes on inherited loopback sockets."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BACKEND = Path(__file__).with_name("gateway_backend.py")


@dataclass
class BackendProcess:
    replica: str
    port: int
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def _spawner() -> tuple[Callable[[str], BackendProcess], list[BackendProcess]]:
    started: list[BackendProcess] = []

    def spawn(replica: str) -> BackendProcess:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Accepted sockets inherit TCP_NODELAY on Linux; uvicorn on an inherited fd does not set it,
        # and Nagle + delayed ACKs would add 40 ms to every response it writes in two parts.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        process = subprocess.Popen(
            [sys.executable, str(BACKEND), str(sock.fileno()), replica],
            pass_fds=[sock.fileno()],
        )
        sock.close()
        backend = BackendProcess(replica, port, process)
        started.append(backend)
        return backend

    return spawn, started


def _stop_all(started: list[BackendProcess]) -> None:
    for backend in started:
        if backend.process.poll() is None:
            backend.process.terminate()
            try:
                backend.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                backend.kill()


@pytest.fixture
def spawn_backend() -> Iterator[Callable[[str], BackendProcess]]:
    """Start ``gateway_backend.py`` replicas; each listens before it starts: no readiness wait."""
    spawn, started = _spawner()
    yield spawn
    _stop_all(started)


@pytest.fixture(scope="module")
def backends_ab() -> Iterator[tuple[BackendProcess, BackendProcess]]:
    """Two replicas, "A" and "B", shared by a module's tests (which use distinct hold keys)."""
    spawn, started = _spawner()
    yield spawn("A"), spawn("B")
    _stop_all(started)

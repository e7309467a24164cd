"""Issue 11, #5 on the model server: request heads bounded in size and time, bodies in time,
idle connections closed, connections capped below the open-file limit.

A real ``python -m kaip.serving`` process (the counting test model) is attacked with raw
sockets; each attack runs under :func:`bounds.harness.measured`.
"""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from model_server.harness import RunningServer, counting_spec, start_server

from bounds.harness import (
    REFUSED_WITHIN_S,
    measured,
    open_files,
    read_answer,
    repeat_for,
    seconds_to_close,
)

MIB = 1024 * 1024
TIMEOUTS = {
    "KAIP_SERVING__HTTP__HEADER_TIMEOUT_SECONDS": "0.5",
    "KAIP_SERVING__HTTP__BODY_TIMEOUT_SECONDS": "0.5",
    "KAIP_SERVING__HTTP__IDLE_TIMEOUT_SECONDS": "0.5",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("bounded")
    running = start_server(counting_spec(directory / "spec"), "counting", directory / "server")
    yield running
    running.stop()


def _start(tmp: Path, env: dict[str, str]) -> RunningServer:
    return start_server(counting_spec(tmp / "spec"), "counting", tmp / "server", env=env)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_a_huge_header_gets_431_at_once(server: RunningServer) -> None:
    """The issue's reproduction sent 200 MiB of header and got 200 OK at double the RSS."""
    answered_after: list[float] = []

    def attack() -> None:
        started = time.monotonic()
        with _connect(server.port) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
            try:
                for _ in range(200):
                    sock.sendall(b"a" * MIB)
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = read_answer(sock)
        answered_after.append(time.monotonic() - started)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]

    with measured(server.process.pid, server.port) as measurement:
        repeat_for(3.0, attack)
    measurement.check()
    measurement.assert_quick(answered_after)
    many = {f"x-h{i}": "v" * 100 for i in range(1000)}  # 100 KiB in many small headers
    assert httpx.get(f"{server.url}/v2/health/live", headers=many).status_code == 431
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


def test_half_sent_requests_slow_bodies_and_idle_connections_are_closed(tmp_path: Path) -> None:
    server = _start(tmp_path, TIMEOUTS)

    def attack() -> None:
        half = []
        for _ in range(300):
            sock = _connect(server.port)
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # no blank line
            half.append(sock)
        slow_body = _connect(server.port)
        slow_body.sendall(
            b"POST /v2/models/counting/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        )
        kept = _connect(server.port)
        kept.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept.recv(65536).startswith(b"HTTP/1.1 200")
        silent = _connect(server.port)  # never sends a byte
        for sock in [*half, slow_body, kept, silent]:
            with sock:
                closed_after.append(seconds_to_close(sock))

    closed_after: list[float] = []
    try:
        with measured(server.process.pid, server.port) as measurement:
            repeat_for(3.0, attack)
        measurement.check()
        measurement.assert_quick(closed_after, 0.5 + REFUSED_WITHIN_S)
    finally:
        assert server.stop() == 0


def test_at_its_open_file_limit_the_server_still_answers_probes(tmp_path: Path) -> None:
    """The issue's reproduction: 256 open files, 300 half-open connections, readiness failed."""
    server = _start(tmp_path, {})
    resource.prlimit(server.process.pid, resource.RLIMIT_NOFILE, (256, 256))
    try:
        with measured(server.process.pid, server.port, "/v2/health/ready") as measurement:
            held = [_connect(server.port) for _ in range(300)]
            for sock in held:
                sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\n")
            time.sleep(3.0)  # probes meanwhile: each new one closes the oldest half-open one
            assert open_files(server.process.pid) < 256
            assert httpx.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200
            for sock in held:
                sock.close()
        measurement.check()
    finally:
        assert server.stop() == 0

"""Issue 11, #5, #6 and #11 on the local gateway: header size, header/body/idle deadlines and the
connection cap; bodies bounded by their route's limit and pipelining by a small cap; the
X-Forwarded-* headers set, never forwarded, and hop-by-hop headers (also those ``Connection``
names) dropped.

The gateway runs in a process of its own (``gateway_process.py``) in front of real replica
processes (``tests/contract/gateway/gateway_backend.py``, which reports what reached it); the
attacks are raw sockets, the rest httpx. Each attack runs under :func:`bounds.harness.measured`.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bounds.harness import (
    REFUSED_WITHIN_S,
    measured,
    open_files,
    read_answer,
    repeat_for,
    seconds_to_close,
)

HERE = Path(__file__).resolve().parent
BACKEND = HERE.parent / "gateway" / "gateway_backend.py"
GATEWAY = HERE / "gateway_process.py"
MIB = 1024 * 1024


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def _replica(name: str) -> Iterator[int]:
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port: int = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(BACKEND), str(sock.fileno()), name], pass_fds=[sock.fileno()]
    )
    sock.close()
    try:
        yield port
    finally:
        _stop(process)


@contextmanager
def _gateway(
    env: dict[str, str] | None = None, open_files_limit: int | None = None
) -> Iterator[Running]:
    """A gateway routing model ``m`` (maxRequestBytes 1 MiB) and app ``a`` to one replica."""
    with _replica("R") as replica:
        backend = {"replica": "R", "revision": "r1", "host": "127.0.0.1", "port": replica}
        routes = [
            {"kind": "model", "name": "m", "weights": {"r1": 100}, "backends": [backend],
             "max_request_bytes": MIB},
            {"kind": "model", "name": "big", "weights": {"r1": 100}, "backends": [backend]},
            {"kind": "app", "name": "a", "weights": {"r1": 100}, "backends": [backend]},
        ]  # fmt: skip
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("KAIP_")}
        full_env.update(env or {})

        def limit_files() -> None:
            if open_files_limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files_limit, open_files_limit))

        process = subprocess.Popen(
            [sys.executable, str(GATEWAY), json.dumps(routes)],
            stdout=subprocess.PIPE,
            env=full_env,
            preexec_fn=limit_files,
        )
        assert process.stdout is not None
        try:
            gateway = Running(process, int(process.stdout.readline()))
            assert httpx.get(f"{gateway.url}/v2/models/m/ready", timeout=30).status_code == 200
            yield gateway
        finally:
            _stop(process)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


# -- #5: heads, deadlines, the connection cap ----------------------------------------------------


def test_a_huge_header_gets_431_at_once() -> None:
    """The issue's reproduction sent 200 MiB of header and got 200 OK at double the RSS."""
    with _gateway() as gateway:
        answered_after: list[float] = []

        def attack() -> None:
            started = time.monotonic()
            with _connect(gateway.port) as sock:
                sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
                try:
                    for _ in range(200):
                        sock.sendall(b"a" * MIB)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                answer = read_answer(sock)
            answered_after.append(time.monotonic() - started)
            assert answer.startswith(b"HTTP/1.1 431"), answer[:200]

        with measured(gateway.pid, gateway.port) as measurement:
            repeat_for(3.0, attack)
        measurement.check()
        measurement.assert_quick(answered_after)


def test_half_sent_requests_and_idle_connections_are_closed() -> None:
    env = {
        "KAIP_LOCAL__GATEWAY_HTTP__HEADER_TIMEOUT_SECONDS": "0.5",
        "KAIP_LOCAL__GATEWAY_HTTP__IDLE_TIMEOUT_SECONDS": "0.5",
    }
    with _gateway(env) as gateway:

        def attack() -> None:
            half: list[socket.socket] = []
            for _ in range(300):
                sock = _connect(gateway.port)
                sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # no blank line
                half.append(sock)
            kept = _connect(gateway.port)
            kept.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            assert kept.recv(65536).startswith(b"HTTP/1.1 200")
            silent = _connect(gateway.port)  # never sends a byte
            for sock in [*half, kept, silent]:
                with sock:
                    closed_after.append(seconds_to_close(sock))

        closed_after: list[float] = []
        with measured(gateway.pid, gateway.port) as measurement:
            repeat_for(3.0, attack)
        measurement.check()
        measurement.assert_quick(closed_after, 0.5 + REFUSED_WITHIN_S)


def test_at_its_open_file_limit_the_gateway_still_answers_probes() -> None:
    """The issue's reproduction: 256 open files, 300 half-open connections, readiness failed."""
    with (
        _gateway(open_files_limit=256) as gateway,
        measured(gateway.pid, gateway.port, "/v2/health/ready") as measurement,
    ):
        held = [_connect(gateway.port) for _ in range(300)]
        for sock in held:
            sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\n")
        time.sleep(3.0)  # probes meanwhile: each new one evicts the oldest half-open one
        assert open_files(gateway.pid) < 256
        answer = httpx.get(f"{gateway.url}/v2/health/ready", timeout=5)
        assert answer.status_code == 200
        for sock in held:
            sock.close()
    measurement.check()


# -- #6: bodies and pipelining -------------------------------------------------------------------


def test_a_body_over_the_routes_limit_gets_413_before_it_is_read() -> None:
    with _gateway() as gateway:
        refused_after: list[float] = []

        def attack() -> None:
            started = time.monotonic()
            with _connect(gateway.port) as sock:
                sock.sendall(
                    b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                    % (64 * MIB)
                )
                answer = read_answer(sock)  # no body sent: the length alone is refused
            refused_after.append(time.monotonic() - started)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            assert b"1048576 bytes, the limit of model 'm'" in answer

        with measured(gateway.pid, gateway.port) as measurement:
            repeat_for(3.0, attack)
        measurement.check()
        measurement.assert_quick(refused_after)

        chunks = (b"x" * 65536 for _ in range(20))  # 1.25 MiB, chunked: no length up front
        assert httpx.post(f"{gateway.url}/v2/models/m/infer", content=chunks).status_code == 413
        fits = httpx.post(f"{gateway.url}/v2/models/m/infer", content=b"x" * (MIB - 1))
        assert fits.json()["body_len"] == MIB - 1
        big = httpx.post(f"{gateway.url}/v1/completions", content=b"x" * (8 * MIB + 1))
        assert big.status_code == 413 and big.json()["error"]["type"] == "invalid_request_error"


def test_pipelined_requests_cannot_pile_up_memory() -> None:
    """The issue's reproduction: one connection, 32 pipelined requests with large bodies, a
    replica that does not answer: the gateway grew from 87 to 2,009 MiB."""
    with _gateway() as gateway:
        body = b"x" * (8 * MIB - 1024)  # just under model big's maxRequestBytes (the default)
        request = (
            b"POST /v2/models/big/hold?p HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            % len(body)
        )
        sock = _connect(gateway.port)
        sent = [0]

        def pipeline() -> None:
            try:
                for _ in range(32):
                    sock.sendall(request)
                    sock.sendall(body)
                    sent[0] += 1
            except OSError:
                pass

        with measured(gateway.pid, gateway.port) as measurement:
            sender = threading.Thread(target=pipeline, daemon=True)
            sender.start()
            sender.join(4.0)  # the gateway stops reading: sendall blocks
        httpx.post(f"{gateway.url}/v2/models/big/release?p", timeout=30)
        sock.close()
        sender.join(10)
        measurement.check()
        assert sent[0] < 32


# -- #11: forwarded headers ------------------------------------------------------------------------


def test_forwarded_headers_are_set_by_the_gateway_and_connection_named_ones_dropped() -> None:
    with _gateway() as gateway:
        answer = httpx.get(
            f"{gateway.url}/apps/a/whoami",
            headers={
                "X-Forwarded-For": "6.6.6.6",
                "X-Forwarded-Prefix": "/evil",
                "X-Forwarded-Host": "evil.example",
                "X-Forwarded-Proto": "https",
                "Forwarded": "for=6.6.6.6",
                "Connection": "keep-alive, X-Secret",
                "X-Secret": "for this hop only",
                "X-Kept": "end to end",
            },
        )
        seen = answer.json()["headers"]
        assert seen["x-forwarded-for"] == "127.0.0.1"
        assert seen["x-forwarded-prefix"] == "/apps/a"
        assert seen["x-forwarded-host"] == f"127.0.0.1:{gateway.port}"
        assert seen["x-forwarded-proto"] == "http"
        assert "forwarded" not in seen and "x-secret" not in seen
        assert seen["x-kept"] == "end to end"


def test_the_portals_session_cookie_never_reaches_an_app_or_a_replica() -> None:
    """The portal's cookie (control port) is sent by browsers to the traffic port too."""
    with _gateway() as gateway:
        seen = []
        for cookie in ("a=1; kaip_portal=s3cret; b=2", "kaip_portal=s3cret", "theme=dark"):
            answer = httpx.get(f"{gateway.url}/apps/a/whoami", headers={"Cookie": cookie})
            seen.append(answer.json()["headers"].get("cookie"))
        assert seen == ["a=1; b=2", None, "theme=dark"]

"""Probe a liveness URL over and over, each time on a fresh connection, and report latencies.

Run as ``python prober.py PORT PATH``. It prints ``warm`` once 20 probes have been answered
(those are not reported), then probes every 10 ms until its stdin closes, and prints the
latencies of the probes after warm-up as one JSON list of milliseconds. A probe that gets no
``HTTP/1.1 200`` within 5 s counts as 5,000 ms. A process of its own, so that the attack the
test runs meanwhile (and the test's own GIL) never delays a probe.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import time

WARM_UP = 30
TIMEOUT_S = 5.0


def probe(port: int, path: str) -> float:
    started = time.perf_counter()
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
            sock.sendall(request)
            head = b""
            while b"\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return TIMEOUT_S * 1000
    if not head.startswith(b"HTTP/1.1 200"):
        return TIMEOUT_S * 1000
    return (time.perf_counter() - started) * 1000


def stopped() -> bool:
    return bool(select.select([sys.stdin], [], [], 0)[0])


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    for _ in range(WARM_UP):
        probe(port, path)
    print("warm", flush=True)
    latencies: list[float] = []
    while not stopped():
        latencies.append(probe(port, path))
        time.sleep(0.01)
    print(json.dumps(latencies), flush=True)


if __name__ == "__main__":
    main()

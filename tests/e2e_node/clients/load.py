"""``python load.py URL BODY_FILE --concurrency 8 --seconds 20 --out FILE``: a counting load.

Run inside the node's network namespace. ``--concurrency`` threads POST the body (JSON) to URL
in a loop, each on its own keep-alive connection (httpx), until ``--seconds`` pass or the file
``--stop`` appears; every request counts as ok (2xx) or failed (any other status, or a
connection error, each kept with its reason, and for each reason the first and last time it
happened, seconds from the start, and its first message). Writes the counts as JSON to ``--out``
when done and a line ``started`` to stdout once the first request succeeded. With
``--new-connections`` every request opens its own connection (``Connection: close``), so that
kube-proxy picks a Service's backend per request rather than once per worker. With
``--retry-connect SECONDS`` a request whose connection cannot be made (refused, unreachable, or
not made within ``--connect-timeout``) is sent again on a new connection every 0.25 s for up to
that long, as Envoy's ``connect-failure`` retry policy does; each such retry is counted apart
(``retried``), and only a request still failing then counts as failed.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

CONNECT_FAILURES = frozenset({"ConnectError", "ConnectTimeout"})
"""A connection that was never made: no request reached a server."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--stop", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--new-connections", action="store_true")
    parser.add_argument("--connect-timeout", type=float, default=10)
    parser.add_argument("--retry-connect", type=float, default=0)
    args = parser.parse_args()
    body = args.body.read_bytes()
    headers = {"Content-Type": "application/json"}
    if args.new_connections:
        headers["Connection"] = "close"
    lock = threading.Lock()
    ok = 0
    failures: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    detail: dict[str, dict[str, object]] = {}
    first = threading.Event()
    started = deadline = 0.0  # set once the URL has settled, below

    def running() -> bool:
        return time.monotonic() < deadline and not (args.stop and args.stop.exists())

    def attempt(client: httpx.Client) -> tuple[str, str]:
        """One request: its failure reason ("" when it succeeded) and a message."""
        try:
            response = client.post(args.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return type(exc).__name__, str(exc)[:200]
        return ("" if response.is_success else f"HTTP {response.status_code}"), response.text[:200]

    def note(kind: str, reason: str, message: str) -> None:
        """Count a failure (``failed``) or a retried connection (``retried``); lock held."""
        (failures if kind == "failed" else retries)[reason] += 1
        at = round(time.monotonic() - started, 2)
        seen = detail.setdefault(f"{kind} {reason}", {"first": at, "message": message})
        seen["last"] = at

    def worker() -> None:
        nonlocal ok
        timeout = httpx.Timeout(10, connect=args.connect_timeout)
        with httpx.Client(timeout=timeout) as client:
            while running():
                give_up = time.monotonic() + args.retry_connect
                reason, message = attempt(client)
                while reason in CONNECT_FAILURES and time.monotonic() < give_up and running():
                    with lock:
                        note("retried", reason, message)
                    time.sleep(0.25)
                    reason, message = attempt(client)
                with lock:
                    if reason:
                        note("failed", reason, message)
                    else:
                        ok += 1
                        first.set()

    # Counting starts once the URL answers three times in a row: a Service's rules appear in
    # kube-proxy's iptables a moment after its pods are ready (a CI run saw 95 connections
    # refused in the first 0.1 s and 8 SYNs lost as the rules were swapped in), which is not
    # what the tests measure.
    settle_until, in_a_row = time.monotonic() + 60, 0
    with httpx.Client(timeout=httpx.Timeout(10, connect=args.connect_timeout)) as probe:
        while in_a_row < 3 and time.monotonic() < settle_until:
            in_a_row = in_a_row + 1 if not attempt(probe)[0] else 0
            time.sleep(0.1)
    started = time.monotonic()
    deadline = started + args.seconds
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    if first.wait(30):
        print("started", flush=True)
    for t in threads:
        t.join()
    counts = {
        "ok": ok,
        "failed": sum(failures.values()),
        "why": failures,
        "retried": sum(retries.values()),
        "detail": detail,
    }
    args.out.write_text(json.dumps(counts))


if __name__ == "__main__":
    main()

"""``python load.py URL BODY_FILE --concurrency 8 --seconds 20 --out FILE``: a counting load.

Run inside the node's network namespace. ``--concurrency`` threads POST the body (JSON) to URL
in a loop, each on its own keep-alive connection (httpx), until ``--seconds`` pass or the file
``--stop`` appears; every request counts as ok (2xx) or failed (any other status, or a
connection error, each kept with its reason). Writes the counts as JSON to ``--out`` when done
and a line ``started`` to stdout once the first request succeeded. With ``--new-connections``
every request opens its own connection (``Connection: close``), so that kube-proxy picks a
Service's backend per request rather than once per worker.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from pathlib import Path

import httpx


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--stop", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--new-connections", action="store_true")
    args = parser.parse_args()
    body = args.body.read_bytes()
    headers = {"Content-Type": "application/json"}
    if args.new_connections:
        headers["Connection"] = "close"
    lock = threading.Lock()
    ok = 0
    failures: Counter[str] = Counter()
    first = threading.Event()
    deadline = time.monotonic() + args.seconds

    def running() -> bool:
        return time.monotonic() < deadline and not (args.stop and args.stop.exists())

    def worker() -> None:
        nonlocal ok
        with httpx.Client(timeout=10) as client:
            while running():
                try:
                    response = client.post(args.url, content=body, headers=headers)
                    reason = "" if response.is_success else f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    reason = type(exc).__name__
                with lock:
                    if reason:
                        failures[reason] += 1
                    else:
                        ok += 1
                        first.set()

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    if first.wait(30):
        print("started", flush=True)
    for t in threads:
        t.join()
    args.out.write_text(json.dumps({"ok": ok, "failed": sum(failures.values()), "why": failures}))


if __name__ == "__main__":
    main()

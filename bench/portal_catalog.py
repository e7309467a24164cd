"""The portal's catalog with 1,000 resources: how long the first page takes to serve.

Usage: .venv/bin/python bench/portal_catalog.py [--resources N] [--rounds N]

Writes N Apps (default 1,000; ``command: [sleep, ...]``, ``minReplicas: 0``, scaled to zero one
second after they start, owners team-0..team-9) into a temporary directory, runs ``kaip up``
there, waits until every App is listed, then times, one after the other over loopback with a
bearer token (the way a logged-in browser's request costs the same on the server):

* ``GET /`` — the catalog's first page (50 rows, HTML), the number the issue sets at <= 200 ms;
* ``GET /?page=20`` — a later page; ``GET /?q=app-09&owner=team-3`` — a search with a filter;
* ``GET /api/v1/resources`` — the first page as JSON;
* ``GET /_kaip/status`` — every resource at once (what an unpaginated list costs: the baseline).

Prints the median and p90 of each (ms), the load average before and after, and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

APP = """\
apiVersion: kaip.dev/v1alpha1
kind: App
metadata: {{name: app-{i:04d}}}
spec:
  owner: team-{team}
  command: [sleep, "3600"]
  scaling: {{minReplicas: 0, maxReplicas: 1, scaleToZeroAfterSeconds: 1}}
"""
ENV = {**os.environ, "KAIP_LOCAL__TICK_SECONDS": "0.5"}
TARGETS = (
    ("first page (HTML, 50 rows)", "/"),
    ("page 20 (HTML)", "/?page=20"),
    ("search + owner (HTML)", "/?q=app-09&owner=team-3"),
    ("first page (JSON API)", "/api/v1/resources"),
    ("all resources: /_kaip/status", "/_kaip/status"),
)


def wait(condition: object, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kaip-bench-portal-") as tmp:
        work = Path(tmp)
        (work / "spec").mkdir()
        docs = [APP.format(i=i, team=i % 10) for i in range(args.resources)]
        (work / "spec" / "kaip.yaml").write_text("---\n".join(docs))
        up = subprocess.Popen(
            [sys.executable, "-m", "kaip.cli", "up", "spec", "--port", "0", "--admin-port", "0"],
            cwd=work, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            run_file = work / ".kaip" / "run.json"
            wait(run_file.exists, 600)
            admin_url = json.loads(run_file.read_text())["admin_url"]
            token = (work / ".kaip" / "admin.token").read_text().strip()
            client = httpx.Client(
                base_url=admin_url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=120,
                trust_env=False,
            )

            def listed() -> bool:
                answer = client.get("/api/v1/resources", params={"per_page": "1"})
                return answer.status_code == 200 and answer.json()["total"] == args.resources

            wait(listed, 900)
            rows = []
            for label, path in TARGETS:
                client.get(path).raise_for_status()  # warm
                times = []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    answer = client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                    answer.raise_for_status()
                times.sort()
                p90 = times[max(0, round(0.9 * len(times)) - 1)]
                median, size = statistics.median(times), len(answer.content)
                rows.append(f"| {label} | {median:.1f} | {p90:.1f} | {size:,} |")
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=120)
    print(f"{args.resources} Apps, {args.rounds} requests each, one at a time, loopback")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    print("| request | median ms | p90 ms | bytes |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

"""The load generator: one bounded wrk run against one server, and its result as plain data.

wrk runs pinned to its own core with one thread and N connections, posting one fixed body
(post.lua); its Lua done() writes the summary parsed here.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA = Path(__file__).with_name("post.lua")


@dataclass(frozen=True)
class LoadResult:
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    status_errors: int  # responses with status >= 400 (wrk's "Non-2xx or 3xx")
    socket_errors: int  # connect + read + write + timeout

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        return self.status_errors + self.socket_errors


def parse_summary(summary: dict[str, Any]) -> LoadResult:
    latency, errors = summary["latency_us"], summary["errors"]
    return LoadResult(
        requests=int(summary["requests"]),
        duration_s=summary["duration_us"] / 1e6,
        p50_ms=latency["p50"] / 1e3,
        p90_ms=latency["p90"] / 1e3,
        p99_ms=latency["p99"] / 1e3,
        max_ms=latency["max"] / 1e3,
        status_errors=int(errors["status"]),
        socket_errors=sum(int(errors[k]) for k in ("connect", "read", "write", "timeout")),
    )


def run_wrk(
    *,
    port: int,
    path: str,
    body: Path,
    connections: int,
    duration_s: float,
    core: int,
    timeout_s: float = 5.0,
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        out = Path(tmp) / "summary.json"
        argv = [
            "taskset", "-c", str(core),
            "wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", f"--timeout={timeout_s:g}s",
            "-s", str(LUA), f"http://127.0.0.1:{port}",
        ]  # fmt: skip
        env = {**os.environ, "BENCH_BODY": str(body), "BENCH_PATH": path, "BENCH_OUT": str(out)}
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=duration_s + timeout_s + 30
        )
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        return parse_summary(json.loads(out.read_text()))

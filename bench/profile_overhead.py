"""What `kaip profile` costs a replica under load: the same wrk load with and without a profile.

Usage: .venv/bin/python bench/profile_overhead.py [--rounds 16] [--duration 3] [--connections 8]
                                                 [--rate 100] [--mode cpu]

One replica of the quickstart digits model (``python -m kaip.serving``, pinned to core 0, with
``KAIP_PROFILE_TOKEN`` set as ``kaip up`` sets it) and wrk on core 1. Each round runs two
measured wrk runs after a short unmeasured warm-up, in alternating order: ``plain`` and
``profiling``, the latter while ``POST /_kaip/profile?seconds=...&rate=...&mode=...`` (what
``kaip profile`` calls) samples the replica for the whole run. The table gives medians over
rounds and the per-round paired ratios (profiling / plain) of req/s and of the replica's CPU per
request (user + system seconds of its process over the run, the sampler thread included, by
wrk's request count: the cost that holds up on a loaded machine), with the middle half (IQR)
of the per-round ratios; each profile's sample count shows the sampler ran. Many short rounds,
not a few long ones: a pair of runs a few seconds apart sees nearly the same load from the rest
of a shared machine, and the median of many pairs is what survives its swings. Results land in
``bench/results/profile-<time>/``. Loopback only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench" / "serving"))

from load import run_wrk  # noqa: E402
from protocol import Protocol  # noqa: E402
from run import cpu_busy, wait_quiet  # noqa: E402

_spec = importlib.util.spec_from_file_location("gateway_run", ROOT / "bench/gateway/run.py")
assert _spec is not None and _spec.loader is not None
gateway_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gateway_run)

PYTHON = sys.executable
OIP = Protocol("oip", "/v2/models/digits/infer")


def profile(port: int, token: str, seconds: float, rate: int, mode: str) -> dict[str, Any]:
    """One profile of the replica, as ``kaip profile`` asks for it (speedscope JSON)."""
    url = (f"http://127.0.0.1:{port}/_kaip/profile?seconds={seconds:g}&rate={rate}"
           f"&mode={mode}&format=speedscope")  # fmt: skip
    request = urllib.request.Request(
        url, method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=seconds + 60) as answer:
        doc: dict[str, Any] = json.loads(answer.read())
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=int, default=100, help="samples a second (kaip's default)")
    parser.add_argument("--mode", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--quiet-cpu", type=float, default=0.25, help="wait below this CPU busy")
    parser.add_argument("--max-wait", type=float, default=120.0)
    args = parser.parse_args()

    out_dir, scratch, quickstart, body_file, body = gateway_run.prepare("profile")
    token = secrets.token_urlsafe(32)
    port_file = scratch / "replica.port"
    replica = gateway_run.start(
        [PYTHON, "-m", "kaip.serving", str(quickstart / "kaip.yaml"), "--model", "digits",
         "--port", "0", "--port-file", str(port_file)],
        0, out_dir / "logs" / "replica.log", {**os.environ, "KAIP_PROFILE_TOKEN": token},
    )  # fmt: skip
    records: list[dict[str, Any]] = []
    busy: list[float] = []
    try:
        port = gateway_run.wait_port(port_file, replica)
        gateway_run.wait_ready(port, body)
        profile(port, token, 1.0, args.rate, args.mode)  # the endpoint answers before we measure
        waited = wait_quiet(args.quiet_cpu, args.max_wait)
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        common = {"port": port, "path": OIP.path, "body": body_file,
                  "connections": args.connections, "core": 1}  # fmt: skip
        for rnd in range(args.rounds):
            order = ["plain", "profiling"] if rnd % 2 == 0 else ["profiling", "plain"]
            for target in order:
                run_wrk(duration_s=args.warmup, **common)  # type: ignore[arg-type]
                samples: list[int] = []
                sampler = None
                if target == "profiling":
                    seconds = args.duration + 2.0  # covers the whole measured run

                    def sample(seconds: float = seconds, into: list[int] = samples) -> None:
                        doc = profile(port, token, seconds, args.rate, args.mode)
                        into.append(int(doc["kaip"]["samples"]))

                    sampler = threading.Thread(target=sample)
                    sampler.start()
                    time.sleep(0.5)  # the sampler is running before wrk starts
                cpu_before = gateway_run.cpu_seconds(replica.pid)
                result = run_wrk(duration_s=args.duration, **common)  # type: ignore[arg-type]
                cpu_us = (gateway_run.cpu_seconds(replica.pid) - cpu_before) * 1e6
                cpu_us /= max(result.requests, 1)
                if sampler is not None:
                    sampler.join()
                records.append({"round": rnd, "target": target, "rps": result.rps,
                                "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
                                "errors": result.errors, "cpu_us_per_request": cpu_us,
                                "samples": samples[0] if samples else None})  # fmt: skip
                print(f"round {rnd} {target:9s} {result.rps:8,.0f} req/s  p50 "
                      f"{result.p50_ms:.3f} ms  p99 {result.p99_ms:.3f} ms  errors "
                      f"{result.errors}  replica CPU {cpu_us:.0f} µs/request"
                      + (f"  samples {samples[0]}" if samples else ""),
                      flush=True)  # fmt: skip
            busy.append(cpu_busy(1.0))
        load_after = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        replica.terminate()
        try:
            replica.wait(timeout=15)
        except subprocess.TimeoutExpired:
            replica.kill()
        shutil.rmtree(scratch, ignore_errors=True)

    def median(target: str, field: str) -> float:
        return statistics.median(r[field] for r in records if r["target"] == target)

    paired = [
        next(r["rps"] for r in records if r["round"] == rnd and r["target"] == "profiling")
        / next(r["rps"] for r in records if r["round"] == rnd and r["target"] == "plain")
        for rnd in range(args.rounds)
    ]
    cpu_paired = [
        next(r["cpu_us_per_request"] for r in records
             if r["round"] == rnd and r["target"] == "profiling")
        / next(r["cpu_us_per_request"] for r in records
               if r["round"] == rnd and r["target"] == "plain")
        for rnd in range(args.rounds)
    ]  # fmt: skip
    cpu_ratio = statistics.median(cpu_paired)
    lines = [
        "| target | req/s | p50 ms | p99 ms | errors | replica CPU µs/request |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {t} | {median(t, 'rps'):,.0f} | {median(t, 'p50_ms'):.3f} | "
          f"{median(t, 'p99_ms'):.3f} | {sum(r['errors'] for r in records if r['target'] == t)} "
          f"| {median(t, 'cpu_us_per_request'):.0f} |"
          for t in ("plain", "profiling")),
        f"| profiling / plain (paired, median) | {statistics.median(paired):.1%}"
        f"{gateway_run.quartiles(paired)} | | | | {cpu_ratio:.3f}x"
        f"{gateway_run.quartiles(cpu_paired)} (kept if CPU-bound: {1 / cpu_ratio:.1%}) |",
    ]  # fmt: skip
    report = "\n".join(lines)
    context = (
        f"{args.rounds} rounds x {args.duration:g} s per run, c={args.connections}, wrk -t1 on "
        f"core 1, replica on core 0; profile at {args.rate} Hz, mode {args.mode}; per-round "
        f"req/s ratios {', '.join(f'{p:.1%}' for p in paired)}, CPU per request ratios "
        f"{', '.join(f'{p:.3f}' for p in cpu_paired)}; samples per profile "
        f"{[r['samples'] for r in records if r['samples'] is not None]}; waited {waited:.0f} s "
        f"for a quiet machine; load average before {' '.join(load_before)}, after "
        f"{' '.join(load_after)}; CPU busy between rounds median {statistics.median(busy):.0%}"
    )
    (out_dir / "results.json").write_text(json.dumps({"records": records, "context": context},
                                                     indent=1))  # fmt: skip
    (out_dir / "table.md").write_text(report + "\n\n" + context + "\n")
    print()
    print(report)
    print()
    print(context)
    print(f"results: {out_dir}")


if __name__ == "__main__":
    main()

"""kaip's CPU per streamed token, per hop, two versions of kaip side by side in one run.

Usage: .venv/bin/python bench/llm/relay_insitu.py --base SRC [--new SRC] [--turns 10]
           [--requests 8] [--tokens 32] [--interval-ms 30] [--concurrency 1] [--target gateway]

Two ``kaip up`` of a Model with ``serve.engine: llama-server`` (one replica each), ``base`` with
``SRC`` first on ``PYTHONPATH`` (a copy of main's ``src``, say ``git archive``), ``new`` with
``--new`` (default: this checkout's ``src``); each replica's engine is ``paced_engine.py`` (a
stand-in streaming llama-server's completion events ``--interval-ms`` apart), not llama.cpp,
so that on a shared machine no engine thread competes for a core all the time with the hops
measured. Turns alternate between the two (``base, new``, then ``new, base``); each sends
``--requests`` streamed completions of ``--tokens`` tokens at ``--concurrency`` through the
gateway (or ``--target relay``: the replica's port) and reads each process's on-CPU time
(``/proc/PID/task/*/schedstat``, as run.py does) before and after. Per token: the gateway's
process (``kaip up``) and the replica's, minus what each spends idle (its supervisor's health
checks, uvicorn's tick: measured in idle turns of the same length between), and the paired
difference new - base per turn pair, median and IQR. Both versions run at once, so load on the
machine falls on both alike; what differs is the code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run

HERE = Path(__file__).resolve().parent
SHIM = """\
import os, sys
os.execv({python!r}, [{python!r}, {engine!r}, "--interval-ms", "{interval}", "--slots", "{slots}",
                      *sys.argv[1:]])
"""


def _start(
    name: str, src: Path, interval: float, slots: int = 0
) -> tuple[subprocess.Popen[bytes], dict[str, str], dict[str, int]]:
    """``kaip up`` with ``src`` first on PYTHONPATH, its engine a paced one: the process, the
    gateway's, the replica's and the engine's URLs, and the three processes' pids."""
    workdir = Path(tempfile.mkdtemp(prefix=f"kaip-insitu-{name}-"))
    spec = run._write_spec(workdir)
    engine_url = run._engine_spec(spec, sys.executable, 1)  # the Model, the shim's package
    (spec / "llama_cpp" / "server" / "__main__.py").write_text(
        SHIM.format(
            python=sys.executable, engine=str(HERE / "paced_engine.py"), interval=interval,
            slots=slots,
        )
    )  # fmt: skip
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src.resolve())
    try:
        process, gateway, relay, replica_pid = run._start_kaip(workdir, spec)
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous
    [engine] = psutil.Process(replica_pid).children()
    print(f"{name}: kaip up {process.pid} ({src}), replica {replica_pid}, engine {engine.pid}")
    pids = {"gateway": process.pid, "replica": replica_pid, "engine": engine.pid}
    return process, {"gateway": gateway, "relay": relay, "peer": engine_url}, pids


async def _batch(url: str, requests: int, concurrency: int, tokens: int) -> int:
    body = {
        "model": run.MODEL, "prompt": "the sea", "max_tokens": tokens, "temperature": 0,
        "stream": True,
    }  # fmt: skip
    counted = 0
    left = [requests]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits, trust_env=False) as client:

        async def worker() -> None:
            nonlocal counted
            while left[0] > 0:
                left[0] -= 1
                async with client.stream("POST", f"{url}/v1/completions", json=body) as answer:
                    answer.raise_for_status()
                    async for line in answer.aiter_lines():
                        if line.startswith("data: {") and '"text":" sea"' in line:
                            counted += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counted


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: run._on_cpu_ns(pid) / 1e3 for name, pid in pids.items()}  # µs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="src of the version to beat")
    parser.add_argument("--new", type=Path, default=run.ROOT / "src")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--interval-ms", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--target", choices=("gateway", "relay"), default="gateway")
    args = parser.parse_args()
    started = {}
    try:
        for name, src in (("base", args.base), ("new", args.new)):
            started[name] = _start(name, src, args.interval_ms)
        pids = {name: found for name, (_, _, found) in started.items()}
        for _, urls, _ in started.values():
            asyncio.run(_batch(urls[args.target], 4, 1, 4))  # warm-up
        per_token: dict[str, dict[str, list[float]]] = {n: {} for n in started}
        idle_rate: dict[str, dict[str, list[float]]] = {n: {} for n in started}
        for turn in range(args.turns):
            order = ["base", "new"] if turn % 2 == 0 else ["new", "base"]
            for name in order:
                urls = started[name][1]
                before, t0 = _cpu(pids[name]), time.perf_counter()
                tokens = asyncio.run(
                    _batch(urls[args.target], args.requests, args.concurrency, args.tokens)
                )
                after, seconds = _cpu(pids[name]), time.perf_counter() - t0
                if tokens != args.requests * args.tokens:
                    raise SystemExit(f"{name}: {tokens} tokens, not {args.requests * args.tokens}")
                # idle, as long (shorter at most 3 s): what the processes spend on their own
                quiet = min(seconds, 3.0)
                idle_before = _cpu(pids[name])
                time.sleep(quiet)
                idle_after = _cpu(pids[name])
                for process in pids[name]:
                    rate = (idle_after[process] - idle_before[process]) / quiet
                    idle_rate[name].setdefault(process, []).append(rate)
                    spent = after[process] - before[process] - rate * seconds
                    per_token[name].setdefault(process, []).append(spent / tokens)
            line = "  ".join(
                f"{n}: " + " ".join(f"{p} {per_token[n][p][-1]:.1f}" for p in per_token[n])
                for n in ("base", "new")
            )
            print(f"turn {turn} (µs/token, idle-corrected): {line}", flush=True)
        print(
            f"\n{args.target}, c={args.concurrency}, {args.requests} x {args.tokens} tokens, "
            f"{args.interval_ms:g} ms apart, {args.turns} turns; load {os.getloadavg()[0]:.1f}"
        )
        print("| process | base µs/token | new µs/token | new - base (paired median, IQR) |")
        print("|---|---:|---:|---:|")
        for process in pids["base"]:
            base, new = per_token["base"][process], per_token["new"][process]
            diffs = sorted(b - a for a, b in zip(base, new, strict=True))
            q = statistics.quantiles(diffs, n=4) if len(diffs) > 1 else [diffs[0]] * 3
            print(
                f"| {process} | {statistics.median(base):.1f} | {statistics.median(new):.1f} | "
                f"{statistics.median(diffs):+.1f} ({q[0]:+.1f} to {q[2]:+.1f}) |"
            )
        for name in ("base", "new"):
            rates = {p: round(statistics.median(v)) for p, v in idle_rate[name].items()}
            print(f"idle µs/s {name}: {rates}")
    finally:
        for process, _, _ in started.values():
            os.killpg(process.pid, signal.SIGTERM)
        for process, _, _ in started.values():
            process.wait(timeout=60)


if __name__ == "__main__":
    main()

"""Where a batch's time goes between generations: kaip in front of llama-server, and it directly.

Usage: .venv/bin/python bench/llm/gaps.py (--llama-server BIN [--gguf FILE] | --paced-ms MS)
                                          [--rounds 3] [--requests 16] [--concurrency 16]
                                          [--max-tokens 32] [--targets gateway,relay,peer]

``kaip up`` a Model with ``serve.engine: llama-server`` as ``run.py --engine-relay`` does (one
replica, the engine its child, ``-np 1``), then the same streamed completions through the
gateway, to the replica's port and to that same engine directly, alternating, each round. Per
request the client notes when it sent it, when the answer's first and last text chunk came.
With one slot the engine runs one generation at a time, so sorted by first text the requests of
a batch follow each other, and the *gap* of one is the time from the previous generation's last
chunk to its own first: the engine's prompt work plus whatever kept the request from reaching
it in time. Per target, medians over rounds: the batch's wall time, its gaps (median and sum),
the generations' spans (first to last chunk) and each process's CPU per token. Load-robust in
that it compares targets in the same rounds; it measures time, so a loaded machine widens it.
``--paced-ms MS`` runs ``paced_engine.py --slots 1`` (one generation at a time, the others
waiting in it, tokens MS apart) in llama-server's place: kaip's own queueing, without the
engine's CPU beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import relay_insitu
import run


async def _one(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int) -> list[float]:
    body = {
        "model": run.MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
        "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    for attempt in (0, 1):
        sent = time.perf_counter()
        first = last = float("nan")
        tokens = 0
        try:
            async with client.stream("POST", f"{url}/v1/completions", json=body) as answer:
                answer.raise_for_status()
                async for line in answer.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    doc = json.loads(line[6:])
                    if any(c.get("text") for c in doc.get("choices", [])):
                        last = time.perf_counter()
                        if first != first:
                            first = last
                    if doc.get("usage"):
                        tokens = int(doc["usage"]["completion_tokens"])
        except httpx.RemoteProtocolError:
            if attempt:
                raise
            continue
        return [sent, first, last, tokens]
    raise AssertionError("not reached")


async def _batch(url: str, requests: int, concurrency: int, max_tokens: int) -> list[list[float]]:
    prompts = [
        f"the {run.WORDS[i % len(run.WORDS)]} and the {run.WORDS[(i // 8) % 8]}"
        for i in range(requests)
    ]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for prompt in prompts:
        queue.put_nowait(prompt)
    rows: list[list[float]] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits, trust_env=False) as client:

        async def worker() -> None:
            while not queue.empty():
                rows.append(await _one(client, url, queue.get_nowait(), max_tokens))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return rows


def _summary(rows: list[list[float]]) -> dict[str, float]:
    start = min(r[0] for r in rows)
    by_first = sorted(rows, key=lambda r: r[1])
    gaps = [b[1] - a[2] for a, b in itertools.pairwise(by_first)]
    spans = [r[2] - r[1] for r in rows]
    tokens = sum(r[3] for r in rows)
    wall = max(r[2] for r in rows) - start
    return {
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "first_gap_ms": 1000 * (by_first[0][1] - start),
        "gap_p50_ms": 1000 * statistics.median(gaps) if gaps else 0.0,
        "gap_max_ms": 1000 * max(gaps) if gaps else 0.0,
        "gap_sum_ms": 1000 * sum(gaps),
        "span_p50_ms": 1000 * statistics.median(spans),
        "span_sum_ms": 1000 * sum(spans),
        "tokens": tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-server")
    parser.add_argument("--paced-ms", type=float, help="a paced engine instead of llama-server")
    parser.add_argument("--gguf", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--targets", default="gateway,relay,peer")
    parser.add_argument("--keep", action="store_true", help="leave kaip up running at the end")
    args = parser.parse_args()
    if args.paced_ms is not None:
        process, every, found = relay_insitu._start("gaps", run.ROOT / "src", args.paced_ms, 1)
        pids = {"kaip": found["gateway"], "replica": found["replica"], "engine": found["engine"]}
    elif args.llama_server:
        workdir = Path(tempfile.mkdtemp(prefix="kaip-bench-gaps-"))
        spec = run._write_spec(workdir, args.gguf)
        engine = run._engine_spec(spec, args.llama_server, 1)
        process, gateway, relay, replica_pid = run._start_kaip(workdir, spec)
        run._check_engine(engine)
        [child] = psutil.Process(replica_pid).children()
        pids = {"kaip": process.pid, "replica": replica_pid, "engine": child.pid}
        every = {"gateway": gateway, "relay": relay, "peer": engine}
    else:
        parser.error("--llama-server BIN or --paced-ms MS")
    try:
        targets = {name: every[name] for name in args.targets.split(",")}
        asyncio.run(_batch(every["gateway"], 4, 4, 4))  # warm-up
        results: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for round_ in range(args.rounds):
            order = list(targets) if round_ % 2 == 0 else list(reversed(targets))
            for name in order:
                before = run._cpu_seconds(pids)
                rows = asyncio.run(
                    _batch(targets[name], args.requests, args.concurrency, args.max_tokens)
                )
                after = run._cpu_seconds(pids)
                row = _summary(rows)
                for pname in pids:
                    row[f"cpu_us_per_token_{pname}"] = (
                        1e6 * (after[pname] - before[pname]) / max(row["tokens"], 1)
                    )
                results[name].append(row)
                shown = {k: round(v, 1) for k, v in row.items()}
                print(f"round {round_} {name}: {shown}", flush=True)
        print("\nmedians over rounds:")
        for name, rows_ in results.items():
            keys = rows_[0].keys()
            shown = {k: round(statistics.median(r[k] for r in rows_), 1) for k in keys}
            print(f"{name}: {shown}")
        print(f"\nload average now {os.getloadavg()[0]:.1f}")
    finally:
        if not args.keep:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)


if __name__ == "__main__":
    main()

"""Prefix-affinity routing vs least-request: two llama.cpp replicas, prompts sharing long prefixes.

Usage: .venv/bin/python bench/llm/prefix.py [--rounds 3] [--questions 24] [--concurrency 1,2]

``kaip up`` serves the tiny GGUF of examples/llm/make_gguf.py (context 2,048 tokens) with two
replicas, once with ``serve.routing: least-request`` (the default) and once with
``prefix-affinity``, each in a fresh temporary directory. The workload: two system prompts of
about 1,000 tokens each, each followed by short distinct questions, sent interleaved (A, B, A,
B, ...) as streamed chat completions (temperature 0, 4 tokens). A llama.cpp replica keeps the
prompt of its previous request in its KV cache (kaip's runtime), so a request that follows one
with the same system prompt on the same replica skips evaluating it. Per routing and
concurrency: TTFT p50 and p99 (first non-empty chunk) and the engines' prompt-cache hit rate,
``kaip_engine_tokens_total{kind="prompt_cached"}`` over ``{kind="prompt"}`` summed over both
replicas' ``/metrics``. Medians over rounds. Results land in ``bench/results/llm-prefix-<time>/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny-llama"
SPEC = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {{name: tiny-llama}}
spec:
  owner: bench
  artifact: {{uri: tiny-llama.gguf, format: gguf}}
  serve: {{protocols: [openai], maxTokens: 64{routing}}}
  scaling: {{minReplicas: 2, maxReplicas: 2}}
"""
SYSTEMS = [
    "You are the river guide. " + "the water and the stone by the river near the mountain " * 90,
    "You are the city clerk. " + "the house and the road in the city by the school and the " * 90,
]
TOKENS = re.compile(r'kaip_engine_tokens_total\{[^}]*kind="(prompt|prompt_cached)"[^}]*\} (\S+)')


def _start(workdir: Path, routing: str) -> tuple[subprocess.Popen[bytes], str, list[int]]:
    spec = workdir / "spec"
    spec.mkdir(parents=True)
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "llm" / "make_gguf.py"),
         str(spec / "tiny-llama.gguf"), "--context", "2048"], check=True, capture_output=True,
    )  # fmt: skip
    extra = "" if routing == "least-request" else f", routing: {routing}"
    (spec / "kaip.yaml").write_text(SPEC.format(routing=extra))
    log = (workdir / "kaip-up.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "kaip.cli", "up", str(spec), "--port", "0", "--admin-port", "0"],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = subprocess.run(
            [sys.executable, "-m", "kaip.cli", "status", "--output", "json"],
            cwd=workdir, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if status.returncode == 0:
            doc = json.loads(status.stdout)
            ports = [
                int(r["port"]) for res in doc.get("resources", []) for r in res.get("replicas", [])
                if r.get("phase") == "ready" and r.get("port")
            ]  # fmt: skip
            if doc.get("ready") and len(ports) == 2:
                run = json.loads((workdir / ".kaip" / "run.json").read_text())
                return process, run["url"], ports
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)
    raise SystemExit(f"kaip up was not ready in 240 s; see {workdir / 'kaip-up.log'}")


def _cache(ports: list[int]) -> tuple[float, float]:
    """(prompt tokens, prompt tokens found in the KV cache) over both replicas so far."""
    totals = {"prompt": 0.0, "prompt_cached": 0.0}
    for port in ports:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False, timeout=10).text
        for kind, value in TOKENS.findall(text):
            totals[kind] += float(value)
    return totals["prompt"], totals["prompt_cached"]


async def _one(client: httpx.AsyncClient, url: str, system: str, question: str) -> float:
    body = {
        "model": MODEL, "max_tokens": 4, "temperature": 0, "stream": True,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
    }  # fmt: skip
    started = time.perf_counter()
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as answer:
        answer.raise_for_status()
        async for line in answer.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                doc = json.loads(line[6:])
                if any((c.get("delta") or {}).get("content") for c in doc.get("choices", [])):
                    return time.perf_counter() - started
    return float("nan")


async def _batch(url: str, questions: int, concurrency: int, salt: str) -> list[float]:
    work = [(SYSTEMS[i % 2], f"question {salt} {i}?") for i in range(2 * questions)]
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    ttfts: list[float] = []
    async with httpx.AsyncClient(timeout=120, trust_env=False) as client:

        async def worker() -> None:
            while not queue.empty():
                ttfts.append(await _one(client, url, *queue.get_nowait()))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ttfts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=24, help="per system prompt and round")
    parser.add_argument("--concurrency", default="1,2")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    out = ROOT / "bench" / "results" / time.strftime("llm-prefix-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    rows: dict[str, dict[int, list[dict[str, float]]]] = {}
    for routing in ("least-request", "prefix-affinity"):
        workdir = Path(tempfile.mkdtemp(prefix="kaip-bench-prefix-"))
        process, url, ports = _start(workdir, routing)
        rows[routing] = {c: [] for c in levels}
        try:
            asyncio.run(_batch(url, 2, 1, "warm"))  # loads both engines, unmeasured
            for round_ in range(args.rounds):
                for c in levels:
                    before = _cache(ports)
                    ttfts = sorted(asyncio.run(_batch(url, args.questions, c, f"{round_}-{c}")))
                    after = _cache(ports)
                    prompt, cached = after[0] - before[0], after[1] - before[1]
                    row = {
                        "ttft_p50_ms": 1000 * statistics.median(ttfts),
                        "ttft_p99_ms": 1000 * ttfts[max(0, int(0.99 * len(ttfts) + 0.999) - 1)],
                        "cache_hit": cached / prompt if prompt else float("nan"),
                        "prompt_tokens": prompt,
                    }
                    rows[routing][c].append(row)
                    print(f"{routing} round {round_} c={c}: {row}", flush=True)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
            shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()
    lines = [
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs; "
        f"{args.rounds} rounds x {2 * args.questions} requests, 2 replicas, 2 system prompts",
        "| c | routing | TTFT p50 ms | TTFT p99 ms | prompt-cache hit rate |",
        "|---|---|---|---|---|",
    ]
    for c in levels:
        for routing, by_level in rows.items():
            got = by_level[c]
            p50 = statistics.median(r["ttft_p50_ms"] for r in got)
            p99 = statistics.median(r["ttft_p99_ms"] for r in got)
            hit = statistics.median(r["cache_hit"] for r in got)
            lines.append(f"| {c} | {routing} | {p50:.1f} | {p99:.1f} | {100 * hit:.0f} % |")
    table = "\n".join(lines)
    print(table)
    (out / "summary.md").write_text(table + "\n")
    (out / "rounds.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""Token streaming through kaip's gateway against the same llama.cpp engine reached directly.

Usage: .venv/bin/python bench/llm/run.py [--rounds 3] [--requests 32] [--max-tokens 64]
                                         [--concurrency 1,4,16] [--peer-url URL]
                                         [--llama-server BIN [--peer-slots 1]]

``kaip up examples/llm`` (the tiny GGUF of examples/llm/make_gguf.py, one replica) in a temporary
directory; the same streamed completions (temperature 0, ``max_tokens`` each, prompts that differ)
go through the gateway and straight to the replica's own port, in alternating order, each round,
at each concurrency. Per target: output tokens/s (tokens the engine counted in ``usage`` over the
wall time of the batch) and time to first token, p50 and p99 (first non-empty text chunk). The
table gives medians over rounds and the ratio gateway/direct. ``--peer-url`` adds any other
OpenAI-compatible server on loopback serving the same GGUF (llama.cpp's own ``llama-server -m
FILE``) as a third target in the same rounds; ``--llama-server BIN`` starts that peer itself on
the very GGUF kaip serves (``bench/llm/build_llama_server.sh`` builds BIN from the llama.cpp
kaip's engine runs), with the engine's thread count (one thread per two CPUs, as
llama-cpp-python's default) and ``--peer-slots`` sequences at a time (1: one generation at a
time, as kaip's replica), each with the engine's context (512 tokens). Results land in
``bench/results/llm-<time>/``.
Loopback only; every request is bounded (120 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny-llama"
WORDS = ("sea", "river", "mountain", "fire", "night", "stone", "water", "tree")


def _start_kaip(workdir: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    spec = workdir / "spec"
    shutil.copytree(ROOT / "examples" / "llm", spec)
    subprocess.run(
        [sys.executable, str(spec / "make_gguf.py"), str(spec / "tiny-llama.gguf")], check=True
    )
    log = (workdir / "kaip-up.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "kaip.cli", "up", str(spec), "--port", "0", "--admin-port", "0"],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = subprocess.run(
            [sys.executable, "-m", "kaip.cli", "status", "--output", "json"],
            cwd=workdir, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if status.returncode == 0:
            doc = json.loads(status.stdout)
            replicas = [
                r for res in doc.get("resources", []) for r in res.get("replicas", [])
                if r.get("phase") == "ready" and r.get("port")
            ]  # fmt: skip
            if doc.get("ready") and replicas:
                run = json.loads((workdir / ".kaip" / "run.json").read_text())
                return process, run["url"], f"http://127.0.0.1:{replicas[0]['port']}"
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)
    raise SystemExit(f"kaip up was not ready in 180 s; see {workdir / 'kaip-up.log'}")


async def _one(
    client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int
) -> tuple[float, int, int]:
    """(seconds to the first text, output tokens the engine counted, retries).

    A kept-alive connection the server closed just as the request went out (llama-server's HTTP
    library closes one after a few requests) is retried once on a new one, as SDKs do; the time
    lost counts in the TTFT, and the retry in the results."""
    body = {
        "model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
        "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    started = time.perf_counter()
    first = None
    tokens = 0
    for retries in (0, 1):
        try:
            async with client.stream("POST", f"{url}/v1/completions", json=body) as answer:
                answer.raise_for_status()
                async for line in answer.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    doc = json.loads(line[6:])
                    if first is None and any(c.get("text") for c in doc.get("choices", [])):
                        first = time.perf_counter() - started
                    if doc.get("usage"):
                        tokens = int(doc["usage"]["completion_tokens"])
        except httpx.RemoteProtocolError:
            if retries or first is not None or tokens:
                raise
            continue
        return (first if first is not None else float("nan")), tokens, retries
    raise AssertionError("not reached")


async def _batch(url: str, requests: int, concurrency: int, max_tokens: int) -> dict[str, float]:
    prompts = [
        f"the {WORDS[i % len(WORDS)]} and the {WORDS[(i // 8) % 8]}" for i in range(requests)
    ]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for prompt in prompts:
        queue.put_nowait(prompt)
    ttfts: list[float] = []
    tokens = retries = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits, trust_env=False) as client:

        async def worker() -> None:
            nonlocal tokens, retries
            while not queue.empty():
                ttft, count, again = await _one(client, url, queue.get_nowait(), max_tokens)
                ttfts.append(ttft)
                tokens += count
                retries += again

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ordered = sorted(ttfts)
    return {
        "tokens_per_s": tokens / wall,
        "ttft_p50_ms": 1000 * statistics.median(ordered),
        "ttft_p99_ms": 1000 * ordered[max(0, int(0.99 * len(ordered) + 0.999) - 1)],
        "tokens": tokens,
        "retries": retries,
    }


def _start_llama_server(
    binary: str, workdir: Path, slots: int
) -> tuple[subprocess.Popen[bytes], str]:
    """llama.cpp's own server on the GGUF of :func:`_start_kaip`, on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threads = max((os.cpu_count() or 2) // 2, 1)  # llama-cpp-python's default n_threads
    log = (workdir / "llama-server.log").open("wb")
    process = subprocess.Popen(
        [binary, "-m", str(workdir / "spec" / "tiny-llama.gguf"), "--host", "127.0.0.1",
         "--port", str(port), "-c", str(512 * slots), "-np", str(slots), "-t", str(threads)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5, trust_env=False).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    raise SystemExit(f"llama-server was not ready in 60 s; see {workdir / 'llama-server.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=32, help="per target, round, concurrency")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--peer-url", help="another OpenAI server on loopback, same GGUF")
    parser.add_argument("--llama-server", help="start this llama-server binary as the peer")
    parser.add_argument("--peer-slots", type=int, default=1, help="llama-server's -np")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    out = ROOT / "bench" / "results" / time.strftime("llm-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    workdir = Path(tempfile.mkdtemp(prefix="kaip-bench-llm-"))
    process, gateway, direct = _start_kaip(workdir)
    targets = {"gateway": gateway, "direct": direct}
    peer: subprocess.Popen[bytes] | None = None
    if args.llama_server:
        try:
            peer, targets["peer"] = _start_llama_server(args.llama_server, workdir, args.peer_slots)
        except BaseException:
            os.killpg(process.pid, signal.SIGTERM)
            raise
    elif args.peer_url:
        targets["peer"] = args.peer_url.rstrip("/")
    results: dict[str, dict[int, list[dict[str, float]]]] = {
        t: {c: [] for c in levels} for t in targets
    }
    try:
        asyncio.run(_batch(gateway, 8, 4, args.max_tokens))  # warm-up, unmeasured
        for round_ in range(args.rounds):
            for c in levels:
                order = list(targets) if round_ % 2 == 0 else list(reversed(targets))
                for name in order:
                    row = asyncio.run(_batch(targets[name], args.requests, c, args.max_tokens))
                    results[name][c].append(row)
                    print(f"round {round_} c={c} {name}: {row}", flush=True)
    finally:
        if peer is not None:
            os.killpg(peer.pid, signal.SIGTERM)
            peer.wait(timeout=60)
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()
    against = "peer" if "peer" in targets else "direct"
    lines = [
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs; "
        f"{args.rounds} rounds x {args.requests} requests x {args.max_tokens} tokens"
        + (f"; peer: llama-server -np {args.peer_slots}" if args.llama_server else "")
        + "; requests retried on a closed kept-alive connection: "
        + ", ".join(
            f"{name} {sum(r['retries'] for rows in results[name].values() for r in rows):.0f}"
            for name in targets
        ),
        f"| c | target | tokens/s | TTFT p50 ms | TTFT p99 ms | tokens/s vs {against} "
        f"| TTFT p50 vs {against} ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in levels:
        base = statistics.median(r["tokens_per_s"] for r in results[against][c])
        base_p50 = statistics.median(r["ttft_p50_ms"] for r in results[against][c])
        for name in targets:
            rows = results[name][c]
            tps = statistics.median(r["tokens_per_s"] for r in rows)
            p50 = statistics.median(r["ttft_p50_ms"] for r in rows)
            p99 = statistics.median(r["ttft_p99_ms"] for r in rows)
            lines.append(
                f"| {c} | {name} | {tps:.0f} | {p50:.1f} | {p99:.1f} | {tps / base:.3f} "
                f"| {p50 - base_p50:+.1f} |"
            )
    table = "\n".join(lines)
    print(table)
    (out / "summary.md").write_text(table + "\n")
    (out / "rounds.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

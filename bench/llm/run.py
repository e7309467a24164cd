"""Token streaming through kaip's gateway against the same llama.cpp engine reached directly.

Usage: .venv/bin/python bench/llm/run.py [--rounds 3] [--requests 32] [--max-tokens 64]
                                         [--concurrency 1,4,16] [--peer-url URL] [--gguf FILE]
                                         [--llama-server BIN [--peer-slots 1]
                                          [--engine-relay [--with-runtime]]] [--minutes M]

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

``--engine-relay`` (with ``--llama-server``) measures kaip in front of llama.cpp's C++ server
instead of kaip's built-in runtime: ``kaip up`` a Model with ``serve.engine: llama-server`` (one
replica, the engine on a port the bench picks, ``-np --peer-slots``), whose replica starts the
engine as its child and relays ``/v1/*`` to it (docs/engines.md). Locally kaip runs
llama-cpp-python's server for that engine (``python -m llama_cpp.server`` in the replica's
directory); the bench puts a ``llama_cpp/server`` package there that ``exec``s BIN instead, with
kaip's arguments as a pod's engine container gets them (``--alias`` for ``--model_alias``, plus
``--metrics``), so the process kaip relays to is llama.cpp's own server and nothing of Python
stays in its path. The targets are then ``gateway`` (kaip's gateway, the replica, the engine),
``relay`` (the replica's own port, the engine) and ``peer`` (that same engine process, directly),
in alternating order every round; ``--with-runtime`` adds ``runtime-gateway`` and
``runtime-direct``, a second ``kaip up`` of examples/llm (kaip's built-in llama-cpp-python runtime)
in the same rounds. The summary adds, per target, the median and interquartile
range over rounds of each round's paired ratio of tokens/s and difference of TTFT p50 against
the reference target of the same round.

``--gguf FILE`` serves that GGUF instead of the tiny one (every ``kaip up`` and the peer, the same
bytes; hard-linked into the spec where it can be, else copied), e.g. one written by
``examples/llm/make_gguf.py small.gguf --shape small``, whose tokens cost the engine about what
a real small LLM's do on a CPU, where the tiny model's cost a fraction of a millisecond and
kaip's own per-token work weighs far more against them than it would in front of a real model.
Loopback only; every request is bounded (120 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
import psutil

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny-llama"
BAD_GATEWAY: dict[str, int] = {}
"""502s retried once, by target URL."""
WORDS = ("sea", "river", "mountain", "fire", "night", "stone", "water", "tree")


def _write_spec(workdir: Path, gguf: Path | None = None) -> Path:
    """examples/llm copied into ``workdir/spec``, its GGUF written by its script (or ``gguf``,
    linked or copied in under the name the spec serves)."""
    spec = workdir / "spec"
    shutil.copytree(ROOT / "examples" / "llm", spec, ignore=shutil.ignore_patterns("*.gguf"))
    target = spec / "tiny-llama.gguf"
    if gguf is None:
        subprocess.run([sys.executable, str(spec / "make_gguf.py"), str(target)], check=True)
        return spec
    try:
        os.link(gguf, target)
    except OSError:  # another file system
        shutil.copyfile(gguf, target)
    return spec


ENGINE_SPEC = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata:
  name: {model}
spec:
  owner: bench
  artifact:
    uri: tiny-llama.gguf
    format: gguf
  serve:
    protocols: [openai]
    engine:
      name: llama-server
      port: {port}
      args: [-c, "{context}", -np, "{slots}", -t, "{threads}"]
  scaling: {{minReplicas: 1, maxReplicas: 1}}
"""

SHIM = """\
# Written by bench/llm/run.py --engine-relay: kaip's replica runs `python -m llama_cpp.server`
# for serve.engine llama-server; this runs llama.cpp's own server in its place (exec: the same
# process, nothing of Python left), with the arguments a pod's engine container gets.
import os
import sys

argv = []
rest = iter(sys.argv[1:])
for arg in rest:
    if arg == "--interrupt_requests":  # llama-cpp-python's alone (llama-server never interrupts)
        next(rest, None)
        continue
    argv.append("--alias" if arg == "--model_alias" else arg)
os.execv({binary!r}, [{binary!r}, *argv, "--metrics"])
"""


def _engine_spec(spec: Path, binary: str, slots: int) -> str:
    """Turn examples/llm's copy into an engine Model relaying to ``binary``; return the
    engine's URL (the engine the replica starts, on the port given here)."""
    port = _free_port()
    (spec / "kaip.yaml").write_text(
        ENGINE_SPEC.format(
            model=MODEL, port=port, context=512 * slots, slots=slots, threads=_threads()
        )
    )
    package = spec / "llama_cpp" / "server"
    package.mkdir(parents=True)
    (spec / "llama_cpp" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(SHIM.format(binary=str(Path(binary).resolve())))
    return f"http://127.0.0.1:{port}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _threads() -> int:
    return max((os.cpu_count() or 2) // 2, 1)  # llama-cpp-python's default n_threads


def _start_kaip(workdir: Path, spec: Path) -> tuple[subprocess.Popen[bytes], str, str, int]:
    """kaip up on ``spec``: the process, the gateway's URL, the replica's URL and pid."""
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
                replica = replicas[0]
                return process, run["url"], f"http://127.0.0.1:{replica['port']}", replica["pid"]
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
                if answer.status_code == 502 and not retries:
                    # kaip's relay answers 502 when the engine closed the kept-alive connection
                    # it reused; retried once as the peer's closes are, counted apart.
                    print(f"502 from {url}: {(await answer.aread())[:300]!r}", flush=True)
                    BAD_GATEWAY[url] = BAD_GATEWAY.get(url, 0) + 1
                    continue
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
    port = _free_port()
    threads = _threads()
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


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile); all three the value itself for one."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def _summary(results: dict[str, dict[int, list[dict[str, float]]]], against: str, head: str) -> str:
    """Medians over rounds, and each round's pairing with ``against`` (median and IQR)."""
    lines = [
        head,
        "",
        f"| c | target | tokens/s | TTFT p50 ms | TTFT p99 ms | tokens/s vs {against} "
        f"| TTFT p50 vs {against} ms | paired tokens/s ratio, median (IQR) "
        f"| paired TTFT p50 diff ms, median (IQR) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in next(iter(results.values())):
        reference = results[against][c]
        base = statistics.median(r["tokens_per_s"] for r in reference)
        base_p50 = statistics.median(r["ttft_p50_ms"] for r in reference)
        for name, levels in results.items():
            rows = levels[c]
            tps = statistics.median(r["tokens_per_s"] for r in rows)
            p50 = statistics.median(r["ttft_p50_ms"] for r in rows)
            p99 = statistics.median(r["ttft_p99_ms"] for r in rows)
            ratio = _quartiles(
                [
                    r["tokens_per_s"] / b["tokens_per_s"]
                    for r, b in zip(rows, reference, strict=True)
                ]
            )
            diff = _quartiles(
                [r["ttft_p50_ms"] - b["ttft_p50_ms"] for r, b in zip(rows, reference, strict=True)]
            )
            lines.append(
                f"| {c} | {name} | {tps:.0f} | {p50:.2f} | {p99:.1f} | {tps / base:.3f} "
                f"| {p50 - base_p50:+.2f} | {ratio[1]:.3f} ({ratio[0]:.3f}-{ratio[2]:.3f}) "
                f"| {diff[1]:+.2f} ({diff[0]:+.2f} to {diff[2]:+.2f}) |"
            )
    return "\n".join(lines)


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds each process (all its threads) has run so far: the scheduler's own count in
    nanoseconds (``/proc/PID/task/*/schedstat``) where there is one, else user + system time in
    clock ticks (10 ms: ±0.3 ms per request over a 32-request batch)."""
    used = {}
    for name, pid in pids.items():
        try:
            used[name] = _on_cpu_ns(pid) / 1e9
            continue
        except (OSError, ValueError, IndexError):
            pass
        try:
            times = psutil.Process(pid).cpu_times()
            used[name] = times.user + times.system
        except psutil.Error:
            used[name] = float("nan")
    return used


def _on_cpu_ns(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
    return total


def _cpu_table(results: dict[str, dict[int, list[dict[str, float]]]], processes: list[str]) -> str:
    """Median CPU milliseconds per request each process spent while a target's batch ran."""
    lines = [
        "CPU ms per request (on-CPU time, /proc/PID/task/*/schedstat), median over rounds, "
        "by process:",
        "",
        "| c | target | " + " | ".join(processes) + " |",
        "|---|---|" + "---|" * len(processes),
    ]
    for c in next(iter(results.values())):
        for name, levels in results.items():
            cells = [
                f"{statistics.median(r[f'cpu_ms_{p}'] for r in levels[c]):.2f}" for p in processes
            ]
            lines.append(f"| {c} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _check_engine(url: str) -> None:
    """The engine kaip relays to must be llama.cpp's C++ server (llama-cpp-python's has no
    /metrics): the shim is found only in the replica's working directory."""
    answer = httpx.get(f"{url}/metrics", timeout=10, trust_env=False)
    if answer.status_code != 200 or "llamacpp:" not in answer.text:
        raise SystemExit(
            f"the engine at {url} is not llama.cpp's llama-server (no llamacpp: /metrics)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--minutes", type=float, default=None,
        help="run rounds (at most --rounds) until this much time has passed",
    )  # fmt: skip
    parser.add_argument("--requests", type=int, default=32, help="per target, round, concurrency")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--peer-url", help="another OpenAI server on loopback, same GGUF")
    parser.add_argument(
        "--gguf", type=Path,
        help="serve this GGUF instead of the tiny one (make_gguf.py --shape small, say)",
    )  # fmt: skip
    parser.add_argument("--llama-server", help="start this llama-server binary as the peer")
    parser.add_argument("--peer-slots", type=int, default=1, help="llama-server's -np")
    parser.add_argument(
        "--engine-relay", action="store_true",
        help="kaip up relays to --llama-server (serve.engine), measured against it directly",
    )  # fmt: skip
    parser.add_argument(
        "--with-runtime", action="store_true",
        help="with --engine-relay: kaip's built-in runtime (kaip up examples/llm) too",
    )  # fmt: skip
    args = parser.parse_args()
    if args.engine_relay and not args.llama_server:
        parser.error("--engine-relay needs --llama-server BIN (bench/llm/build_llama_server.sh)")
    if args.gguf is not None and not args.gguf.is_file():
        parser.error(f"--gguf {args.gguf}: no such file (examples/llm/make_gguf.py writes one)")
    levels = [int(c) for c in args.concurrency.split(",")]
    out = ROOT / "bench" / "results" / time.strftime("llm-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    workdir = Path(tempfile.mkdtemp(prefix="kaip-bench-llm-"))
    spec = _write_spec(workdir, args.gguf)
    engine = _engine_spec(spec, args.llama_server, args.peer_slots) if args.engine_relay else ""
    started_load = os.getloadavg()
    process, gateway, direct, replica_pid = _start_kaip(workdir, spec)
    pids = {"kaip": process.pid, "replica": replica_pid}
    targets = {"gateway": gateway, "relay" if engine else "direct": direct}
    peer: subprocess.Popen[bytes] | None = None
    runtime: subprocess.Popen[bytes] | None = None
    try:
        if engine and args.with_runtime:
            second = workdir / "runtime"
            second.mkdir()
            runtime, *urls, runtime_pid = _start_kaip(second, _write_spec(second, args.gguf))
            targets["runtime-gateway"], targets["runtime-direct"] = urls
            pids["kaip-runtime"], pids["replica-runtime"] = runtime.pid, runtime_pid
        if engine:
            _check_engine(engine)
            targets["peer"] = engine
            [child] = psutil.Process(replica_pid).children()
            pids["engine"] = child.pid
        elif args.llama_server:
            peer, targets["peer"] = _start_llama_server(args.llama_server, workdir, args.peer_slots)
            pids["peer"] = peer.pid
        elif args.peer_url:
            targets["peer"] = args.peer_url.rstrip("/")
    except BaseException:
        for started in (process, runtime):
            if started is not None:
                os.killpg(started.pid, signal.SIGTERM)
        raise
    results: dict[str, dict[int, list[dict[str, float]]]] = {
        t: {c: [] for c in levels} for t in targets
    }
    rounds = 0
    began = time.monotonic()
    try:
        for url in targets.values():
            asyncio.run(_batch(url, 8, 4, args.max_tokens))  # warm-up, unmeasured
        for round_ in range(args.rounds):
            if args.minutes is not None and time.monotonic() - began > 60 * args.minutes:
                break
            for c in levels:
                order = list(targets) if round_ % 2 == 0 else list(reversed(targets))
                for name in order:
                    before = _cpu_seconds(pids)
                    row = asyncio.run(_batch(targets[name], args.requests, c, args.max_tokens))
                    after = _cpu_seconds(pids)
                    for process_name in pids:
                        spent = after[process_name] - before[process_name]
                        row[f"cpu_ms_{process_name}"] = 1000 * spent / args.requests
                    results[name][c].append(row)
                    print(f"round {round_} c={c} {name}: {row}", flush=True)
            rounds += 1
    finally:
        if peer is not None:
            os.killpg(peer.pid, signal.SIGTERM)
            peer.wait(timeout=60)
        for started in (process, runtime):
            if started is not None:
                os.killpg(started.pid, signal.SIGTERM)
                started.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()
    against = "peer" if "peer" in targets else "direct"
    peer_kind = f"llama-server -np {args.peer_slots}"
    model = (
        f"{args.gguf} ({args.gguf.stat().st_size / 1e6:.0f} MB)"
        if args.gguf is not None
        else "the tiny GGUF"
    )
    head = (
        f"{model}; load average "
        f"{started_load[0]:.1f} {started_load[1]:.1f} {started_load[2]:.1f} before, "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} after, on {os.cpu_count()} CPUs; "
        f"{rounds} rounds in {time.monotonic() - began:.0f} s x {args.requests} requests x "
        f"{args.max_tokens} tokens"
        + (f"; kaip relays to {peer_kind} (serve.engine)" if engine else "")
        + (f"; peer: {peer_kind}" if args.llama_server and not engine else "")
        + "; requests retried on a closed kept-alive connection: "
        + ", ".join(
            f"{name} {sum(r['retries'] for rows in results[name].values() for r in rows):.0f}"
            for name in targets
        )
        + "; of them a 502 from kaip: "
        + ", ".join(f"{name} {BAD_GATEWAY.get(url, 0)}" for name, url in targets.items())
    )
    table = _summary(results, against, head) + "\n\n" + _cpu_table(results, list(pids))
    print(table)
    (out / "summary.md").write_text(table + "\n")
    (out / "rounds.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

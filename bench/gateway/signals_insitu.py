"""The gateway's signals in place: one process, one event loop, real loopback sockets.

Usage: .venv/bin/python bench/gateway/signals_insitu.py --turns 200 [--block 500]
                                 [--modes off,metrics,recorder,on,direct] [--core 1]
       .venv/bin/python bench/gateway/signals_insitu.py [--rounds 8] [--requests 20000]
                                 [--modes off,sdkidle,on]

``--turns N`` (the precise one): every mode's gateway in one process, driven in turns of
``--block`` requests with the order alternating, each turn's CPU paired with the first mode's
turn beside it, so the machine's slow drift cancels. Without it, each run is a fresh process
(``sdkidle`` needs that: the SDK configured in a process is there for every mode in it).

A run holds a real kaip gateway (``kaip.local.gateway.Gateway``), a
minimal HTTP/1.1 backend (raw asyncio protocol and httptools, a fixed 200 answer) and a
keep-alive client with 8 connections, all on one uvloop loop, posting the bench's one-row OIP
request through the gateway. Its CPU time over the requests (``time.process_time``: every thread,
the SDK's export thread included; ``time.thread_time``: the loop's thread alone) by the request
count is the whole exchange's CPU per request, and since the client and the backend do the same
work in every mode, the difference between modes is what the signals cost the gateway in place:
with the socket work, the event loop and its caches around them, which ``signals_loop.py`` leaves
out, and without what the two-process bench mixes in (another replica behind, the machine's
pace). Modes: ``off`` (``observe=False``), ``metrics`` (``kaip up`` without
``OTEL_EXPORTER_OTLP_ENDPOINT``), ``recorder`` (metrics and kaip's span recorder with its default
sampler, sampled spans to a list: no SDK), ``on`` (metrics and the recorder the SDK's batch
processor exports over OTLP/HTTP to a sink process, as ``kaip up`` with the variable set) and
``sdkidle`` (``off``, but the SDK configured in the process: its threads and modules, no spans);
``direct`` sends the client's requests straight to the backend, so ``off`` minus ``direct`` is
the gateway's own CPU per request in place. The SDK's batch processor exports every 5 s, so a run
of a second or two holds no export: its cost (~100 µs per sampled trace, about 10 a second) is
measured apart (bench/README.md). The garbage collector's runs are counted (``gc.callbacks``).
Rounds (or turns) alternate the order of the modes. Prints each mode's median CPU µs per request
and its paired difference from the first mode's (median and middle half).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODES = ("off", "metrics", "recorder", "on", "sdkidle", "direct")
CONNECTIONS = 8
BODY = (
    b'{"inputs":[{"name":"input-0","shape":[1,64],"datatype":"FP32","data":[[' + b"0.0," * 63
    + b'0.0]]}]}'
)  # fmt: skip
ANSWER = b'{"model_name":"digits","outputs":[{"name":"output-0","shape":[1],"datatype":"INT64","data":[0]}]}'  # noqa: E501


class Backend(asyncio.Protocol):
    """A replica that answers every request with the same small JSON (keep-alive)."""

    def connection_made(self, transport: Any) -> None:
        import httptools

        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(ANSWER), ANSWER)
        )


class Client(asyncio.Protocol):
    """One keep-alive connection of a batch: it posts ``BODY`` again each time an answer is
    complete while the batch has requests left to send; the batch is done when every one it
    sent is answered (``batch``: sent, answered, size; shared by a mode's connections)."""

    def __init__(self, request: bytes) -> None:
        import httptools

        self.request = request
        self.batch = [0, 0, 0]
        self.done: asyncio.Future[None] | None = None
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def arm(self, batch: list[int], done: asyncio.Future[None]) -> None:
        self.batch, self.done = batch, done

    def send(self) -> None:
        batch = self.batch
        if batch[0] < batch[2]:
            batch[0] += 1
            self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        assert self.done is not None
        if self.parser.get_status_code() != 200:
            self.done.set_exception(RuntimeError(f"status {self.parser.get_status_code()}"))
            return
        batch = self.batch
        batch[1] += 1
        if batch[1] == batch[2]:
            self.done.set_result(None)
        else:
            self.send()


async def run_batch(clients: list[Client], count: int) -> None:
    """``count`` requests over ``clients``, returning once every one is answered."""
    batch = [0, 0, count]
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    for client in clients:
        client.arm(batch, done)
    for client in clients:
        client.send()
    await done


async def one_run(mode: str, requests: int, warmup: int) -> dict[str, float]:
    from kaip.local.gateway import Backend as Upstream
    from kaip.local.gateway import Gateway, Route

    keep: Any = None
    if mode in ("on", "sdkidle"):
        from kaip.telemetry.otel import configure

        keep = configure("kaip-gateway")
    if mode == "on":
        gateway = Gateway(host="127.0.0.1", port=0, tracer=keep.spans)
    elif mode == "recorder":
        from kaip.telemetry.spans import SpanRecorder

        spans: list[Any] = []
        gateway = Gateway(host="127.0.0.1", port=0, tracer=SpanRecorder(spans.append))
    elif mode == "metrics":
        gateway = Gateway(host="127.0.0.1", port=0)
    else:
        gateway = Gateway(host="127.0.0.1", port=0, observe=False)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Backend, "127.0.0.1", 0)
    backend_port = server.sockets[0].getsockname()[1]
    port = await gateway.start()
    upstream = Upstream(replica="digits-0", revision="1", host="127.0.0.1", port=backend_port)
    gateway.set_routes(
        [Route(kind="model", name="digits", weights={"1": 100}, backends=(upstream,), owner="b")]
    )
    if mode == "direct":  # the client straight to the backend: what the gateway's CPU adds to
        port = backend_port
    request = (
        b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (port, len(BODY), BODY)
    )

    clients = []
    for _ in range(CONNECTIONS):
        _, client = await loop.create_connection(lambda: Client(request), "127.0.0.1", port)
        clients.append(client)

    await run_batch(clients, warmup)
    collections = [0, 0.0]  # the garbage collector's runs, and its time in them

    def gc_watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections[1] -= time.thread_time()
        else:
            collections[0] += 1
            collections[1] += time.thread_time()

    gc.callbacks.append(gc_watch)
    process, thread, wall = time.process_time(), time.thread_time(), time.perf_counter()
    await run_batch(clients, requests)
    process = time.process_time() - process
    thread = time.thread_time() - thread
    wall = time.perf_counter() - wall
    gc.callbacks.remove(gc_watch)
    await gateway.stop()
    server.close()
    return {
        "process_us": process * 1e6 / requests,
        "thread_us": thread * 1e6 / requests,
        "gc_per_1k": collections[0] * 1000 / requests,
        "gc_us": collections[1] * 1e6 / requests,
        "rps": requests / wall,
    }


async def interleaved(
    modes: list[str], blocks: int, block: int, warmup: int, gc_runs: dict[str, int]
) -> dict[str, list[float]]:
    """Every mode's gateway in this one process, in front of one backend, driven in turns of
    ``block`` requests (order alternating each turn): the loop thread's CPU µs per request of
    each turn, by mode (and into ``gc_runs`` the garbage collector's runs in each mode's turns).
    Turns a few tens of ms apart share the machine's state, so paired turns cancel the slow
    drift that separate processes see."""
    from kaip.local.gateway import Backend as Upstream
    from kaip.local.gateway import Gateway, Route
    from kaip.telemetry.spans import SpanRecorder

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Backend, "127.0.0.1", 0)
    backend_port = server.sockets[0].getsockname()[1]
    upstream = Upstream(replica="digits-0", revision="1", host="127.0.0.1", port=backend_port)
    route = Route(kind="model", name="digits", weights={"1": 100}, backends=(upstream,), owner="b")
    telemetry: Any = None
    gateways: list[Any] = []
    clients: dict[str, list[Client]] = {}
    for mode in modes:
        if mode == "direct":
            port = backend_port
        else:
            if mode == "on":
                if telemetry is None:
                    from kaip.telemetry.otel import configure

                    telemetry = configure("kaip-gateway")
                gateway = Gateway(host="127.0.0.1", port=0, tracer=telemetry.spans)
            elif mode == "recorder":
                sink: list[Any] = []
                gateway = Gateway(host="127.0.0.1", port=0, tracer=SpanRecorder(sink.append))
            elif mode == "metrics":
                gateway = Gateway(host="127.0.0.1", port=0)
            else:
                gateway = Gateway(host="127.0.0.1", port=0, observe=False)
            port = await gateway.start()
            gateway.set_routes([route])
            gateways.append(gateway)
        request = (
            b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
            b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (port, len(BODY), BODY)
        )
        clients[mode] = []
        for _ in range(CONNECTIONS):
            _, client = await loop.create_connection(
                lambda request=request: Client(request), "127.0.0.1", port
            )
            clients[mode].append(client)

    for mode in modes:
        await run_batch(clients[mode], warmup)
    per_request: dict[str, list[float]] = {mode: [] for mode in modes}
    runs = [0]  # the garbage collector's, counted per mode below

    def counted(phase: str, info: dict[str, int]) -> None:
        runs[0] += phase == "stop"

    gc.callbacks.append(counted)
    for turn in range(blocks):
        for mode in modes if turn % 2 == 0 else list(reversed(modes)):
            before, started = runs[0], time.thread_time()
            await run_batch(clients[mode], block)
            per_request[mode].append((time.thread_time() - started) * 1e6 / block)
            gc_runs[mode] = gc_runs.get(mode, 0) + runs[0] - before
    gc.callbacks.remove(counted)
    for gateway in gateways:
        await gateway.stop()
    server.close()
    return per_request


def child(mode: str, requests: int, warmup: int, core: int) -> None:
    import uvloop

    if core >= 0:
        os.sched_setaffinity(0, {core})  # one core, as the bench's gateway (no migrations)

    print(json.dumps(uvloop.run(one_run(mode, requests, warmup))))


def sink() -> subprocess.Popen[bytes]:
    """An OTLP/HTTP endpoint in its own process that reads each export and drops it."""
    code = (
        "import sys; from http.server import BaseHTTPRequestHandler as B, HTTPServer as S\n"
        "class H(B):\n"
        " def do_POST(s):\n"
        "  s.rfile.read(int(s.headers.get('Content-Length','0'))); s.send_response(200)\n"
        "  s.send_header('Content-Length','0'); s.end_headers()\n"
        " def log_message(s,*a): pass\n"
        "srv=S(('127.0.0.1',0),H); print(srv.server_address[1],flush=True); srv.serve_forever()\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)


def quartiles(values: list[float]) -> str:
    if len(values) < 4:
        return ""
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f" (IQR {q1:+.2f} to {q3:+.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--modes", default="off,metrics,recorder,on")
    parser.add_argument("--core", type=int, default=1, help="pin each run here (-1: no pin)")
    parser.add_argument(
        "--turns",
        type=int,
        default=0,
        help="instead of a process per run: every mode in one process, this many turns of "
        "--block requests each (sdkidle is not a mode here)",
    )
    parser.add_argument("--block", type=int, default=1000)
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.requests, args.warmup, args.core)
        return
    modes = args.modes.split(",")
    if unknown := [m for m in modes if m not in MODES]:
        raise SystemExit(f"--modes: no mode {unknown}; the modes: {', '.join(MODES)}")
    receiver = sink()
    assert receiver.stdout is not None
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{int(receiver.stdout.readline())}",
    }
    env.pop("OTEL_TRACES_SAMPLER", None)
    print("load average before:", " ".join(Path("/proc/loadavg").read_text().split()[:3]))
    if args.turns:
        try:
            in_turns(args, modes, env)
        finally:
            receiver.terminate()
            receiver.wait()
        print("load average after:", " ".join(Path("/proc/loadavg").read_text().split()[:3]))
        return
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    try:
        for rnd in range(args.rounds):
            for mode in modes if rnd % 2 == 0 else list(reversed(modes)):
                argv = [sys.executable, __file__, "--child", mode, "--requests",
                        str(args.requests), "--warmup", str(args.warmup), "--core",
                        str(args.core)]  # fmt: skip
                out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
                results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
                row = results[mode][-1]
                print(f"round {rnd} {mode:8s} {row['process_us']:7.2f} µs/request "
                      f"(loop thread {row['thread_us']:7.2f}; garbage collector "
                      f"{row['gc_per_1k']:.2f} runs per 1,000 requests, {row['gc_us']:.2f} µs), "
                      f"{row['rps']:7.0f} req/s", flush=True)  # fmt: skip
    finally:
        receiver.terminate()
        receiver.wait()
    print("load average after:", " ".join(Path("/proc/loadavg").read_text().split()[:3]))
    base = results[modes[0]]
    for mode in modes:
        rows = results[mode]
        line = f"{mode:8s}"
        for key in ("process_us", "thread_us", "gc_us"):
            median = statistics.median(r[key] for r in rows)
            diffs = [r[key] - b[key] for r, b in zip(rows, base, strict=True)]
            paired = f"{statistics.median(diffs):+.2f} vs {modes[0]}{quartiles(diffs)}"
            line += f"  {key} {median:7.2f} ({paired})"
        print(line)


def in_turns(args: argparse.Namespace, modes: list[str], env: dict[str, str]) -> None:
    """``--turns``: every mode in this process, its turns paired against ``modes[0]``'s."""
    import uvloop

    if "sdkidle" in modes:
        raise SystemExit("--turns: sdkidle needs a process of its own (leave out --turns)")
    os.environ.update(env)
    if args.core >= 0:
        os.sched_setaffinity(0, {args.core})
    gc_runs: dict[str, int] = {}
    per_request = uvloop.run(interleaved(modes, args.turns, args.block, args.warmup, gc_runs))
    print(
        f"{args.turns} turns of {args.block} requests per mode, order alternating; the loop "
        "thread's CPU µs per request (median of turns; paired against the first mode's turn)"
    )
    base = per_request[modes[0]]
    for mode in modes:
        turns = per_request[mode]
        diffs = [a - b for a, b in zip(turns, base, strict=True)]
        print(
            f"{mode:8s} {statistics.median(turns):7.2f} µs/request  "
            f"({statistics.median(diffs):+.2f} vs {modes[0]}{quartiles(diffs)}); "
            f"garbage collector runs per 1,000 requests: "
            f"{gc_runs.get(mode, 0) * 1000 / (args.turns * args.block):.2f}"
        )


if __name__ == "__main__":
    main()

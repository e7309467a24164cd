"""The model server's tracing in place: one process, one event loop, real loopback sockets.

Usage: .venv/bin/python bench/gateway/replica_insitu.py [--turns 100] [--block 400]
                                 [--modes off,off+tp00,traced,traced+tp00,traced+tp01] [--core 0]

The replica's counterpart of ``signals_insitu.py``: two real model servers (the quickstart digits
model, ``kaip.serving.server.build`` and ``load``, each under uvicorn with the bounded httptools
protocol as ``serve`` runs it) in one process on one uvloop loop, one with tracing off and one
traced as ``OTEL_EXPORTER_OTLP_ENDPOINT`` makes it (``kaip.telemetry.otel.configure``: the span
recorder with kaip's default sampler, the SDK's batch processor exporting over OTLP/HTTP to a
sink process), and 8 keep-alive client connections per mode posting the bench's one-row OIP
request with the headers the gateway sends a replica. Modes (replica, and the ``traceparent``
the request carries):

- ``off``: the untraced replica, no ``traceparent`` (what the plain gateway sends);
- ``off+tp00``: the untraced replica, an unsampled ``traceparent`` (the header's parsing alone);
- ``traced``: the traced replica, no ``traceparent`` (hit directly: its own sampler decides);
- ``traced+tp00``: the traced replica, an unsampled ``traceparent`` (flags 00), a fresh one per
  request as the signals gateway sends for every request it does not trace (nearly all);
- ``traced+tp01``: the traced replica, a sampled ``traceparent``: every request recorded (its
  export thread's work lands in whichever turns it runs beside: read the loop thread's column);
- ``off2``: a second untraced replica, no ``traceparent``: the difference between two alike
  servers in one process (an A/A check, ~0);
- ``plain``: an untraced replica under uvicorn's own httptools protocol instead of kaip's
  bounded one (``kaip.serving.protocol``): what the bounds on heads, bodies and connections
  cost per request;
- ``rootless``: a traced replica as ``kaip up`` runs it behind its tracing gateway
  (``KAIP_TRACE_ROOTS=off``), no ``traceparent``: what it gets for a trace the gateway started
  and did not sample (session 15; before, ``traced+tp00``).

Driven in turns of ``--block`` requests, the order alternating, each turn's CPU (the process's:
the loop thread, which predicts inline, and the SDK's export thread) paired with the ``off`` turn
beside it, so the host's drift cancels. The client does the same in every mode but for the
header's 70 bytes, so the differences are the replica's. Also the mean rows per predict call in
each mode (the replica's own batch-size histogram), since a replica's CPU per request falls with
the size of its batches. Prints each mode's median CPU µs per request and its paired difference
from the first mode's (median and middle half).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from signals_insitu import BODY, CONNECTIONS, Client, quartiles, run_batch, sink

ROOT = Path(__file__).resolve().parents[2]
MODES = ("off", "off+tp00", "traced", "traced+tp00", "traced+tp01", "off2", "plain", "rootless")
_HEX = "0123456789abcdef"


def head(port: int, traceparent: bytes) -> bytes:
    """The request the gateway sends a replica (``http1.request_head``'s headers, in its order)."""
    request = (
        b"POST /v2/models/digits/infer HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"x-forwarded-host: 127.0.0.1:%d\r\nx-forwarded-for: 127.0.0.1\r\n"
        b"x-forwarded-proto: http\r\ncontent-length: %d\r\n" % (port, len(BODY))
    )
    if traceparent:
        request += b"traceparent: " + traceparent + b"\r\n"
    return request + b"\r\n" + BODY


class FreshClient(Client):
    """A client whose every request carries a new ``traceparent`` (flags ``flags``), as the
    gateway's: a fresh random trace and parent id each time (drawn before the measure, in a
    ring of 4,096, so the client's own work is the same as without one)."""

    def __init__(self, port: int, flags: bytes) -> None:
        from kaip.telemetry.spans import unsampled_traceparent

        super().__init__(b"")
        self.heads = [head(port, unsampled_traceparent()[:-2] + flags) for _ in range(4096)]
        self.at = 0

    def send(self) -> None:
        self.request = self.heads[self.at]
        self.at = (self.at + 1) & 4095
        super().send()


async def replicas(
    names: list[str], quickstart: Path, spans: Any
) -> tuple[dict[str, Any], dict[str, int], list[Any]]:
    """A model server per name (``off*``, ``plain``: tracing off; else on), on loopback:
    (apps, ports, servers)."""
    import gc

    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from kaip.serving.protocol import bounded_protocol
    from kaip.serving.server import ServeOptions, bind, build, load
    from kaip.settings import load_settings

    settings = load_settings()
    limits = settings.serving.http
    apps, ports, servers = {}, {}, []
    for name in names:
        recorder = None if name.startswith(("off", "plain")) else spans
        if name == "rootless":  # as kaip up runs it behind its tracing gateway
            from dataclasses import replace

            from kaip.telemetry.spans import DEFAULT_SAMPLING, SpanRecorder

            recorder = SpanRecorder(spans.sink, replace(DEFAULT_SAMPLING, roots=False))
        options = ServeOptions(
            spec_path=quickstart / "kaip.yaml", model="digits", host="127.0.0.1", port=0,
            spans=recorder,
        )  # fmt: skip
        app, doc, _ = build(options, settings)
        load(app, doc, settings)
        app.model.mark_ready()
        sock = bind("127.0.0.1", 0)
        protocol = HttpToolsProtocol if name == "plain" else bounded_protocol(limits)
        config = uvicorn.Config(
            app, http=protocol, timeout_keep_alive=limits.idle_timeout_seconds,  # type: ignore[arg-type]
            lifespan="off", access_log=False, log_level="warning", server_header=False,
            proxy_headers=False, backlog=2048,
        )  # fmt: skip
        server = uvicorn.Server(config)
        servers.append((server, asyncio.create_task(server.serve(sockets=[sock]))))
        apps[name] = app
        ports[name] = sock.getsockname()[1]
    while not all(s.started for s, _ in servers):
        await asyncio.sleep(0.01)
    gc.collect()
    gc.freeze()  # as serve() does once loaded
    return apps, ports, servers


async def interleaved(
    quickstart: Path, modes: list[str], turns: int, block: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, float]]:
    from kaip.telemetry.otel import configure

    telemetry = configure("kaip-serving", {"kaip.model": "digits", "kaip.revision": "1"})
    names = sorted({mode.partition("+")[0] for mode in modes})
    apps, ports, servers = await replicas(names, quickstart, telemetry.spans)
    loop = asyncio.get_running_loop()
    clients: dict[str, list[Client]] = {}
    for mode in modes:
        replica, _, tp = mode.partition("+")
        port = ports[replica]
        clients[mode] = []
        for _ in range(CONNECTIONS):
            if tp:
                factory: Any = lambda port=port, tp=tp: FreshClient(port, tp[2:].encode())  # noqa: E731
            else:
                factory = lambda port=port: Client(head(port, b""))  # noqa: E731
            _, client = await loop.create_connection(factory, "127.0.0.1", port)
            clients[mode].append(client)
    for mode in modes:
        await run_batch(clients[mode], warmup)
    process: dict[str, list[float]] = {mode: [] for mode in modes}
    thread: dict[str, list[float]] = {mode: [] for mode in modes}
    batches: dict[str, list[float]] = {mode: [0, 0] for mode in modes}  # calls, rows
    for turn in range(turns):
        for mode in modes if turn % 2 == 0 else list(reversed(modes)):
            histogram = apps[mode.partition("+")[0]].model.metrics.batch_rows
            calls, rows = sum(histogram.counts), histogram.sum
            started, started_thread = time.process_time(), time.thread_time()
            await run_batch(clients[mode], block)
            process[mode].append((time.process_time() - started) * 1e6 / block)
            thread[mode].append((time.thread_time() - started_thread) * 1e6 / block)
            batches[mode][0] += sum(histogram.counts) - calls
            batches[mode][1] += histogram.sum - rows
    for server, task in servers:
        server.should_exit = True
        await task
    telemetry.shutdown()
    rows_per_call = {m: b[1] / b[0] if b[0] else 0.0 for m, b in batches.items()}
    return process, thread, rows_per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--block", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--core", type=int, default=0, help="pin the process here (-1: no pin)")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if unknown := [m for m in modes if m not in MODES]:
        raise SystemExit(f"--modes: no mode {unknown}; the modes: {', '.join(MODES)}")
    import uvloop

    scratch = Path(tempfile.mkdtemp(prefix="kaip-bench-replica-insitu-"))
    receiver = sink()
    try:
        quickstart = scratch / "quickstart"
        shutil.copytree(ROOT / "examples" / "quickstart", quickstart)
        subprocess.run(
            [sys.executable, str(quickstart / "train.py"), str(quickstart / "model.joblib")],
            check=True,
            capture_output=True,
        )
        assert receiver.stdout is not None
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = (
            f"http://127.0.0.1:{int(receiver.stdout.readline())}"
        )
        os.environ.pop("OTEL_TRACES_SAMPLER", None)
        if args.core >= 0:
            os.sched_setaffinity(0, {args.core})
        print("load average before:", " ".join(Path("/proc/loadavg").read_text().split()[:3]))
        process, thread, rows = uvloop.run(
            interleaved(quickstart, modes, args.turns, args.block, args.warmup)
        )
        print("load average after:", " ".join(Path("/proc/loadavg").read_text().split()[:3]))
    finally:
        receiver.terminate()
        receiver.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"{args.turns} turns of {args.block} requests per mode, order alternating; CPU µs per "
        f"request, whole exchange (median of turns; paired against {modes[0]}'s turn beside it)"
    )
    for mode in modes:
        line = f"{mode:12s}"
        for label, per in (("process", process), ("loop thread", thread)):
            diffs = [a - b for a, b in zip(per[mode], per[modes[0]], strict=True)]
            line += (
                f"  {label} {statistics.median(per[mode]):7.2f} "
                f"({statistics.median(diffs):+.2f}{quartiles(diffs)})"
            )
        print(f"{line}  rows per predict {rows[mode]:.2f}")


if __name__ == "__main__":
    main()

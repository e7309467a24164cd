"""A kaip gateway alone in its own process, in front of given replicas, for the benchmark.

Usage: python gateway_proc.py PORT_FILE BACKEND_PORT [BACKEND_PORT...]
Routes model ``digits`` (one revision) to the replicas on 127.0.0.1, writes its bound port to
PORT_FILE, and serves until killed. Runs on uvloop, or on asyncio's default loop when
``BENCH_LOOP=asyncio``. ``BENCH_SIGNALS=on`` turns on every signal as ``kaip up`` does with
``OTEL_EXPORTER_OTLP_ENDPOINT`` set (metrics, and a span per request and attempt of the sampled
traces, exported over OTLP by the SDK's batch processor; the sampler is ``OTEL_TRACES_SAMPLER``'s,
kaip's default when unset; no ``traceparent`` for a trace it starts and does not sample, as
``kaip up`` runs its gateway in front of Model replicas with ``KAIP_TRACE_ROOTS=off``);
``BENCH_SIGNALS=metrics`` the
metrics alone (``kaip up`` without ``OTEL_EXPORTER_OTLP_ENDPOINT``); otherwise the gateway runs
with ``observe=False`` (no metrics records, no spans).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import uvloop

from kaip.local.gateway import Backend, Gateway, Route


async def serve(port_file: Path, backend_ports: list[int]) -> None:
    if os.environ.get("BENCH_SIGNALS") == "on":
        from kaip.telemetry.otel import configure

        # As kaip up runs it: its Model replicas start no trace (KAIP_TRACE_ROOTS=off, run.py).
        tracer = configure("kaip-gateway").spans
        gateway = Gateway(host="127.0.0.1", port=0, tracer=tracer, models_start_no_traces=True)
    elif os.environ.get("BENCH_SIGNALS") == "metrics":
        gateway = Gateway(host="127.0.0.1", port=0)
    else:
        gateway = Gateway(host="127.0.0.1", port=0, observe=False)
    port = await gateway.start()
    backends = tuple(
        Backend(replica=f"digits-{i}", revision="1", host="127.0.0.1", port=p)
        for i, p in enumerate(backend_ports)
    )
    route = Route(kind="model", name="digits", weights={"1": 100}, backends=backends, owner="bench")
    gateway.set_routes([route])
    port_file.write_text(str(port))
    await asyncio.Event().wait()


if __name__ == "__main__":
    main = serve(Path(sys.argv[1]), [int(p) for p in sys.argv[2:]])
    if os.environ.get("BENCH_LOOP") == "asyncio":
        asyncio.run(main)
    else:
        uvloop.run(main)

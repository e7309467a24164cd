"""A kaip gateway alone in its own process, in front of given replicas, for the benchmark.

Usage: python gateway_proc.py PORT_FILE BACKEND_PORT [BACKEND_PORT...]
Routes model ``digits`` (one revision) to the replicas on 127.0.0.1, writes its bound port to
PORT_FILE, and serves until killed. Runs on uvloop, or on asyncio's default loop when
``BENCH_LOOP=asyncio``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import uvloop

from kaip.local.gateway import Backend, Gateway, Route


async def serve(port_file: Path, backend_ports: list[int]) -> None:
    gateway = Gateway(host="127.0.0.1", port=0)
    port = await gateway.start()
    backends = tuple(
        Backend(replica=f"digits-{i}", revision="1", host="127.0.0.1", port=p)
        for i, p in enumerate(backend_ports)
    )
    gateway.set_routes([Route(kind="model", name="digits", weights={"1": 100}, backends=backends)])
    port_file.write_text(str(port))
    await asyncio.Event().wait()


if __name__ == "__main__":
    main = serve(Path(sys.argv[1]), [int(p) for p in sys.argv[2:]])
    if os.environ.get("BENCH_LOOP") == "asyncio":
        asyncio.run(main)
    else:
        uvloop.run(main)

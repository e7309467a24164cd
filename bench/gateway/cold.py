"""Scale from zero through the gateway: how long the first request waits for a fresh replica.

Usage: .venv/bin/python bench/gateway/cold.py [--runs 5]

A gateway (in this process, on uvloop) holds model ``digits`` with no backend. The first request
makes it call ``on_demand``, which here does what the controller does: start one
``python -m kaip.serving`` replica of the quickstart digits model, poll its readiness every 20 ms,
and hand the gateway the ready backend. Reported per run: the first request's latency (client
view), the replica's start-to-ready time, and what is left (the gateway's hold and release plus
the request itself). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from kaip.local.gateway import Backend, Gateway, Route

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "serving"))
from artifact import request_rows  # noqa: E402
from protocol import Protocol  # noqa: E402

OIP = Protocol("oip", "/v2/models/digits/infer")
EMPTY = Route(kind="model", name="digits", weights={"1": 100}, backends=())


async def http(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    raw = await reader.read()
    writer.close()
    status = int(raw.split(b" ", 2)[1])
    return status, raw.split(b"\r\n\r\n", 1)[1]


class Starter:
    """What the controller does on demand, reduced to one replica."""

    def __init__(self, gateway: Gateway, spec: Path, scratch: Path) -> None:
        self.gateway, self.spec, self.scratch = gateway, spec, scratch
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = self.ready_at = 0.0

    def on_demand(self, name: str) -> None:
        if self.process is None:
            asyncio.get_running_loop().create_task(self.start())

    async def start(self) -> None:
        port_file = self.scratch / f"replica-{time.monotonic_ns()}.port"
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kaip.serving", str(self.spec), "--model", "digits",
             "--port", "0", "--port-file", str(port_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        while not (port_file.exists() and port_file.read_text().strip()):
            await asyncio.sleep(0.02)
        port = int(port_file.read_text())
        while True:
            try:
                if (await http(port, "GET", "/v2/health/ready"))[0] == 200:
                    break
            except OSError:
                pass
            await asyncio.sleep(0.02)
        self.ready_at = time.perf_counter()
        backend = Backend(replica="digits-cold", revision="1", host="127.0.0.1", port=port)
        self.gateway.set_routes([Route("model", "digits", {"1": 100}, (backend,))])

    def stop(self) -> None:
        self.gateway.set_routes([EMPTY])
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=15)
            self.process = None


async def main(runs: int) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="kaip-bench-cold-"))
    quickstart = scratch / "quickstart"
    shutil.copytree(ROOT / "examples" / "quickstart", quickstart)
    train = [sys.executable, str(quickstart / "train.py"), str(quickstart / "model.joblib")]
    subprocess.run(train, check=True, capture_output=True)
    body = OIP.body(request_rows(1).tolist())
    starters: list[Starter] = []
    gateway = Gateway(
        host="127.0.0.1",
        port=0,
        hold_timeout_s=120,
        on_demand=lambda name: starters[0].on_demand(name),
    )
    port = await gateway.start()
    starter = Starter(gateway, quickstart / "kaip.yaml", scratch)
    starters.append(starter)
    gateway.set_routes([EMPTY])
    rows = []
    try:
        for run in range(runs):
            sent = time.perf_counter()
            status, answer = await http(port, "POST", OIP.path, body)
            done = time.perf_counter()
            assert status == 200, answer
            first_ms = (done - sent) * 1000
            ready_ms = (starter.ready_at - starter.started_at) * 1000
            rows.append((first_ms, ready_ms, first_ms - ready_ms))
            print(f"run {run}: first request {first_ms:.0f} ms, replica start-to-ready "
                  f"{ready_ms:.0f} ms, rest {first_ms - ready_ms:.1f} ms", flush=True)  # fmt: skip
            starter.stop()
    finally:
        starter.stop()
        await gateway.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    med = [statistics.median(r[i] for r in rows) for i in range(3)]
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"\nmedian of {runs}: first request {med[0]:.0f} ms = replica start-to-ready "
          f"{med[1]:.0f} ms + gateway hold/release and the request {med[2]:.1f} ms "
          f"(load average {load})")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    uvloop.run(main(parser.parse_args().runs))

"""Quick self-benchmark of the kaip model server (not the peer benchmark: see bench/serving/).

Trains the quickstart digits model into a temporary directory, starts
``python -m kaip.serving`` pinned to CPU 0 and drives ``POST /v2/models/digits/infer`` with wrk
pinned to CPU 1 (1 row per request unless --rows), for each connection count. Checks every
prediction of one request per distinct digit against ``model.predict`` first.

    python bench/serving_self.py [--connections 1 64] [--duration 10] [--rows 1]

Needs wrk (apt-get install wrk) and two CPUs. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{body}]]
done = function(summary, latency, requests)
  io.write(string.format("JSON {{\\"p50\\": %f, \\"p99\\": %f, \\"non2xx\\": %d}}\\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
"""


def start_server(workdir: Path, max_delay_ms: float | None) -> tuple[subprocess.Popen[bytes], int]:
    spec = workdir / "kaip.yaml"
    if max_delay_ms is not None:
        text = spec.read_text().replace("maxDelayMs: 2", f"maxDelayMs: {max_delay_ms:g}")
        spec.write_text(text)
    port_file = workdir / "port"
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "kaip.serving", str(workdir),
         "--model", "digits", "--port", "0", "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.1)
    return server, int(port_file.read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--max-delay-ms", type=float, default=None)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")

    import joblib
    import numpy as np
    from sklearn.datasets import load_digits

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "quickstart"
        shutil.copytree(ROOT / "examples" / "quickstart", workdir)
        subprocess.run([sys.executable, str(workdir / "train.py")], check=True, capture_output=True)
        model = joblib.load(workdir / "model.joblib")
        x, _ = load_digits(return_X_y=True)
        rows = x[: args.rows].astype(np.float32)
        server, port = start_server(workdir, args.max_delay_ms)
        url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
        try:
            body = json.dumps(
                {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP32",
                             "data": rows.ravel().tolist()}]}  # fmt: skip
            )
            request = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
            with urllib.request.urlopen(request) as response:
                got = json.load(response)["outputs"][0]["data"]
            assert got == model.predict(rows).tolist(), (got, model.predict(rows))
            script = Path(tmp) / "infer.lua"
            script.write_text(LUA.format(body=body))
            print(f"| connections | rows | req/s | p50 ms | p99 ms | errors |")
            print("|---|---|---|---|---|---|")
            for conns in args.connections:
                out = subprocess.run(
                    ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{args.duration}s",
                     "-s", str(script), url],
                    check=True, capture_output=True, text=True,
                ).stdout  # fmt: skip
                rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
                stats = json.loads(out.split("JSON ", 1)[1].splitlines()[0])
                print(
                    f"| {conns} | {args.rows} | {rps:,.0f} | {stats['p50']:.2f} | "
                    f"{stats['p99']:.2f} | {stats['non2xx']} |"
                )
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

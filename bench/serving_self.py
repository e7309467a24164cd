"""Quick self-benchmark of the kaip model server (not the peer benchmark: see bench/serving/).

Fits Pipeline(StandardScaler, LogisticRegression) on the digits into a copy of the quickstart
(the issue's benchmark model), starts
``python -m kaip.serving`` pinned to CPU 0 and drives ``POST /v2/models/digits/infer`` with wrk
pinned to CPU 1 (1 row per request unless --rows), for each connection count. Checks the
server's answer against ``model.predict`` first. With ``--limit`` it interleaves the raw-ASGI
"limit" server of bench/serving/peers/limit (same model, same load) and prints kaip/limit,
which stays meaningful on a busy machine where absolute req/s do not.

    python bench/serving_self.py [--connections 1 64] [--duration 10] [--rows 1] [--limit]

Needs wrk (apt-get install wrk) and two CPUs. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
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


def wait_for_port(server: subprocess.Popen[bytes], port_file: Path) -> int:
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text().strip():
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.1)
    return int(port_file.read_text())


def start_kaip(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = workdir / "port"
    port_file.unlink(missing_ok=True)
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "kaip.serving", str(workdir),
         "--model", "digits", "--port", "0", "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return server, wait_for_port(server, port_file)


def start_limit(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, str(ROOT / "bench/serving/peers/limit/server.py"),
         str(workdir / "model.joblib"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1)
            return server, port
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the limit server did not start") from None
            time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (what it cost, whatever else ran)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(
    url: str, script: Path, conns: int, duration: int, pid: int
) -> tuple[float, dict[str, float]]:
    before = cpu_seconds(pid)
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "-s", str(script),
         url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    stats = json.loads(out.split("JSON ", 1)[1].splitlines()[0])
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    stats["cpu_us"] = (cpu_seconds(pid) - before) / max(total, 1) * 1e6
    return rps, stats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--limit", action="store_true", help="interleave the raw-ASGI limit")
    parser.add_argument("--max-delay-ms", type=float, default=None, help="override the spec's")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")

    import joblib
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "quickstart"
        shutil.copytree(ROOT / "examples" / "quickstart", workdir)
        # The benchmark model, with the step names the limit server folds by.
        x, y = load_digits(return_X_y=True)
        model = Pipeline(
            [("scaler", StandardScaler()), ("clf", LogisticRegression(max_iter=2000))]
        ).fit(x, y)
        joblib.dump(model, workdir / "model.joblib")
        if args.max_delay_ms is not None:
            spec = workdir / "kaip.yaml"
            text = spec.read_text().replace("maxDelayMs: 2", f"maxDelayMs: {args.max_delay_ms:g}")
            spec.write_text(text)
        rows = x[: args.rows].astype(np.float32)
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": list(rows.shape),
                        "datatype": "FP32",
                        "data": rows.ravel().tolist(),
                    }
                ]
            }
        )
        script = Path(tmp) / "infer.lua"
        script.write_text(LUA.format(body=body))
        starters = {"kaip": start_kaip, **({"limit": start_limit} if args.limit else {})}
        results: dict[tuple[str, int], list[tuple[float, dict[str, float]]]] = {}
        for _ in range(args.rounds):
            for name, start in starters.items():
                server, port = start(workdir)
                url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
                try:
                    request = urllib.request.Request(
                        url, body.encode(), {"Content-Type": "application/json"}
                    )
                    with urllib.request.urlopen(request) as response:
                        got = json.load(response)["outputs"][0]["data"]
                    assert got == model.predict(rows).tolist(), (name, got)
                    for conns in args.connections:
                        results.setdefault((name, conns), []).append(
                            load(url, script, conns, args.duration, server.pid)
                        )
                finally:
                    server.terminate()
                    server.wait(30)
        print(
            "| server | connections | rows | req/s (median) | p50 ms | p99 ms | errors "
            "| server CPU µs/request |"
        )
        print("|---|---|---|---|---|---|---|---|")
        medians: dict[tuple[str, int], float] = {}
        for (name, conns), runs in results.items():
            runs.sort(key=lambda r: r[0])
            rps, stats = runs[len(runs) // 2]
            medians[(name, conns)] = rps
            print(
                f"| {name} | {conns} | {args.rows} | {rps:,.0f} | {stats['p50']:.2f} | "
                f"{stats['p99']:.2f} | {stats['non2xx']:.0f} | {stats['cpu_us']:.0f} |"
            )
        if args.limit:
            for conns in args.connections:
                ratio = medians[("kaip", conns)] / medians[("limit", conns)]
                cpu = [
                    sorted(r[1]["cpu_us"] for r in results[(name, conns)])[len(runs) // 2]
                    for name in ("kaip", "limit")
                ]
                print(
                    f"- {conns} conn: kaip / limit req/s = {ratio:.2f}; server CPU per request "
                    f"kaip {cpu[0]:.0f} µs vs limit {cpu[1]:.0f} µs"
                )


if __name__ == "__main__":
    main()

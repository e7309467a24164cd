"""Scale-from-zero first-request latency of ``kaip up``, against a bare cold start.

Usage: .venv/bin/python bench/scale_from_zero.py [--rounds N]

Trains the quickstart digits model into a temporary directory, runs ``kaip up`` there with
``minReplicas: 0`` and ``scaleToZeroAfterSeconds: 1``, and for each round waits until the model
has no replica, then times one inference through the gateway (held, a replica started, answered).
The baseline is the floor of any scale from zero on this machine: starting ``python -m
kaip.serving`` by hand and polling the same inference until it answers. Everything on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart"
BODY = {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
SPEC = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {{name: digits}}
spec:
  owner: bench
  artifact: {{uri: model.joblib, format: sklearn, sha256: {sha256}}}
  scaling: {{minReplicas: 0, maxReplicas: 1, scaleToZeroAfterSeconds: 1}}
"""
ENV = {
    **os.environ,
    "KAIP_LOCAL__TICK_SECONDS": "0.2",
    "KAIP_LOCAL__STABILIZATION_SECONDS": "1",
    "KAIP_LOCAL__HOLD_TIMEOUT_SECONDS": "120",
}


def wait(condition: object, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.05)


def through_kaip(work: Path, rounds: int) -> list[float]:
    up = subprocess.Popen(
        [sys.executable, "-m", "kaip.cli", "up", "spec", "--port", "0", "--admin-port", "0"],
        cwd=work, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        run_file = work / ".kaip" / "run.json"
        wait(run_file.exists)
        record = json.loads(run_file.read_text())
        url, admin_url = record["url"], record["admin_url"]
        token = (work / ".kaip" / "admin.token").read_text().strip()
        client = httpx.Client(timeout=120, trust_env=False)

        def replicas() -> int:
            headers = {"Authorization": f"Bearer {token}"}
            status = client.get(f"{admin_url}/_kaip/status", headers=headers).json()
            return len(status["resources"][0]["replicas"]) if status["resources"] else -1

        latencies = []
        for _ in range(rounds):
            wait(lambda: replicas() == 0)
            started = time.perf_counter()
            response = client.post(f"{url}/v2/models/digits/infer", json=BODY)
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
        return latencies
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)


def bare_cold_start(work: Path, rounds: int) -> list[float]:
    latencies = []
    for _ in range(rounds):
        port_file = work / "port"
        port_file.unlink(missing_ok=True)
        started = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "kaip.serving", str(work / "spec" / "kaip.yaml"), "--model",
             "digits", "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            with httpx.Client(timeout=5, trust_env=False) as client:
                while True:
                    try:
                        port = int(port_file.read_text())
                        if client.post(f"http://127.0.0.1:{port}/v2/models/digits/infer",
                                       json=BODY).status_code == 200:  # fmt: skip
                            break
                    except (OSError, ValueError, httpx.HTTPError):
                        pass
                    time.sleep(0.01)
            latencies.append(time.perf_counter() - started)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return latencies


def row(name: str, values: list[float]) -> str:
    return (
        f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} "
        f"| {len(values)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kaip-bench-") as tmp:
        work = Path(tmp)
        (work / "spec").mkdir()
        model = work / "spec" / "model.joblib"
        subprocess.run([sys.executable, str(QUICKSTART / "train.py"), str(model)], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        digest = hashlib.sha256(model.read_bytes()).hexdigest()
        (work / "spec" / "kaip.yaml").write_text(SPEC.format(sha256=digest))
        kaip = through_kaip(work, args.rounds)
        bare = bare_cold_start(work, args.rounds)
    ratio = statistics.median(kaip) / statistics.median(bare)
    print("| first request after idle | median s | min s | max s | rounds |")
    print("|---|---|---|---|---|")
    print(row("`kaip up`, scaled to zero, through the gateway", kaip))
    print(row("bare `python -m kaip.serving` start to first answer", bare))
    print(f"\nscale from zero costs {ratio:.2f}x a bare cold start (median)")


if __name__ == "__main__":
    main()

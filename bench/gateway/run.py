"""Gateway overhead: the same wrk load through the kaip gateway and straight to the replica.

Usage: .venv/bin/python bench/gateway/run.py [--rounds 5] [--duration 10] [--connections 8]
                                            [--peer kserve] [--signals] [--only T1,T2,...]

One replica of the quickstart digits model (``python -m kaip.serving``, pinned to core 0) and
one gateway process in front of it (pinned to core 1, with wrk). Each round runs wrk against
both targets in alternating order after a short unmeasured warm-up; the table gives medians over
rounds and the per-round paired difference of p50 (gateway minus direct). ``--peer kserve`` adds
KServe served directly (core 0, from ``bench/.venvs/kserve``, see bench/serving) as a third
target in the same rounds, so "through the gateway vs the best peer" is measured under the same
load. ``--signals`` adds three more gateway processes beside the plain one (signals off), in the
same rounds: ``gateway+metrics`` (``kaip up``'s default), ``gateway+signals`` (metrics, and the
spans of the traces kaip's default sampler keeps, exported over OTLP to a sink in this process
that reads and drops them) and ``gateway+signals(all)`` (every request traced), with each one's
throughput and gateway CPU per request paired against the plain gateway's. The two gateways
with spans send to a second replica whose tracing is on too (``OTEL_EXPORTER_OTLP_ENDPOINT`` to
the same sink), run as ``kaip up`` runs the Model replicas behind its tracing gateway
(``KAIP_TRACE_ROOTS=off``: it starts no trace and follows the gateway's decision, which passes a
``traceparent`` on only for a trace that goes on), so ``gateway+signals`` against ``gateway`` is
the whole serving path with every signal on against every signal off; and ``direct+tracing``
(a third replica alone, its default sampler) and ``direct+tracing(all)`` (a fourth tracing every
request) against ``direct`` give the model server's own tracing cost.
Each target's path CPU per request (every process its requests run through: the gateway and the
replica behind it, or the replica alone) is measured over each run beside req/s; the ratio rows
give the middle half (IQR) of their per-round ratios. Each run also records the mean rows per
predict call of the replica behind the target (its ``kaip_batch_size_rows`` before and after,
read outside the CPU measure): a replica's CPU per request falls as its batches grow, so the
pace at which a gateway sends requests shows in it. ``paired.py`` pairs the rounds of one or
more runs with bootstrap intervals. ``--only gateway,gateway+signals`` runs
just those targets (all are still started), so a round is short and each pair close in time.
Results land in ``bench/results/gateway-<time>/``. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SERVING = ROOT / "bench" / "serving"
sys.path.insert(0, str(SERVING))

from artifact import build, request_rows  # noqa: E402
from load import LoadResult, run_wrk  # noqa: E402
from process import Server  # noqa: E402
from protocol import Protocol  # noqa: E402
from run import cpu_busy, wait_quiet  # noqa: E402
from servers import ALL  # noqa: E402

PYTHON = sys.executable
OIP = Protocol("oip", "/v2/models/digits/infer")


def start(
    argv: list[str], core: int, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(["taskset", "-c", str(core), *argv], stdout=out, stderr=out, env=env)


SIGNAL_GATEWAYS = (
    ("metrics", "gateway+metrics", ""),  # kaip up without OTEL_EXPORTER_OTLP_ENDPOINT
    ("on", "gateway+signals", ""),  # everything on, kaip's default sampler
    ("on", "gateway+signals(all)", "parentbased_always_on"),  # every request traced
)
"""``(BENCH_SIGNALS, target, OTEL_TRACES_SAMPLER)`` of the gateways ``--signals`` adds."""
TRACED_REPLICAS = (
    ("direct+tracing", "", "on"),  # the model server hit directly, kaip's default sampler
    ("direct+tracing(all)", "parentbased_always_on", "on"),  # tracing every request
    ("behind+tracing", "", "off"),  # as kaip up runs it behind its tracing gateway (no target)
)
"""``(name, OTEL_TRACES_SAMPLER, KAIP_TRACE_ROOTS)`` of the replicas with tracing on that
``--signals`` adds; the span-making gateways send to ``behind+tracing``."""


def traced_env(sampler: str) -> dict[str, str]:
    """The bench's environment with ``sampler`` as the only sampler setting ('' for kaip's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_TRACES_SAMPLER")}
    if sampler:
        env["OTEL_TRACES_SAMPLER"] = sampler
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that reads every export and drops it (counts spans' requests)."""

    exports = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Sink.exports += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def batch_totals(port: int) -> tuple[float, float]:
    """A replica's predict calls and rows so far (``kaip_batch_size_rows`` on its ``/metrics``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    calls = rows = 0.0
    for line in text.splitlines():
        if line.startswith("kaip_batch_size_rows_count"):
            calls += float(line.rsplit(" ", 1)[1])
        elif line.startswith("kaip_batch_size_rows_sum"):
            rows += float(line.rsplit(" ", 1)[1])
    return calls, rows


def wait_port(port_file: Path, process: subprocess.Popen[bytes], timeout_s: float = 90) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"process exited with {process.returncode}; see its log")
        if port_file.exists() and port_file.read_text().strip():
            return int(port_file.read_text())
        time.sleep(0.1)
    raise SystemExit("no port within the deadline")


def post(port: int, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{OIP.path}",
        data=body,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, answer.read()


def wait_ready(port: int, body: bytes, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if post(port, body)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answered on port {port}")


def start_peer(name: str, scratch: Path, out_dir: Path, body: bytes) -> tuple[Server, int] | None:
    """Start a peer server directly on core 0, as bench/serving runs it; None if unavailable."""
    sdef = next(s for s in ALL if s.name == name)
    if (why := sdef.unavailable()) is not None:
        print(f"{name}: unavailable: {why}")
        return None
    launch = sdef.launch(build(scratch / "peer-model"), scratch)
    server = Server(
        name, launch.argv, cwd=launch.cwd, env=launch.env, log=out_dir / "logs" / f"{name}.log",
        core=0,
    )  # fmt: skip
    server.wait_until(lambda: post(launch.port, body)[0] == 200, sdef.startup_timeout_s)
    return server, launch.port


def result_row(
    target: str,
    conns: int,
    rnd: int,
    r: LoadResult,
    cpu_us: float | None = None,
    path_cpu_us: float | None = None,
    rows_per_predict: float | None = None,
) -> dict[str, Any]:
    return {
        "gateway_cpu_us_per_request": cpu_us,
        "path_cpu_us_per_request": path_cpu_us,
        "replica_rows_per_predict": rows_per_predict,
        "target": target,
        "connections": conns,
        "round": rnd,
        "rps": r.rps,
        "p50_ms": r.p50_ms,
        "p90_ms": r.p90_ms,
        "p99_ms": r.p99_ms,
        "errors": r.errors,
        "requests": r.requests,
    }


def quartiles(values: list[float]) -> str:
    """`` (IQR a-b)``: the middle half of per-round ratios, so the table shows their spread."""
    if len(values) < 4:
        return ""
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f" (IQR {q1:.2f}-{q3:.2f})"


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| connections | target | req/s | p50 ms | p99 ms | errors | p50 added (paired) "
        "| gateway CPU µs/request | path CPU µs/request |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for conns in sorted({r["connections"] for r in records}):
        rows = [r for r in records if r["connections"] == conns]
        by_round: dict[int, dict[str, dict[str, Any]]] = {}
        for r in rows:
            by_round.setdefault(r["round"], {})[r["target"]] = r
        medians: dict[str, float] = {}
        traced = (t[0] for t in TRACED_REPLICAS)
        for target in ("direct", *traced, "gateway", *(g[1] for g in SIGNAL_GATEWAYS), "kserve"):
            mine = [r for r in rows if r["target"] == target]
            if not mine:
                continue
            added = [
                pair[target]["p50_ms"] - pair["direct"]["p50_ms"]
                for pair in by_round.values()
                if {target, "direct"} <= pair.keys()
            ]
            med = {k: statistics.median(r[k] for r in mine) for k in ("rps", "p50_ms", "p99_ms")}
            medians[target] = med["rps"]
            gated = target not in ("direct", "kserve") and added
            extra = f"{statistics.median(added):+.3f} ms" if gated else ""
            cpu = [r["gateway_cpu_us_per_request"] for r in mine if r["gateway_cpu_us_per_request"]]
            cpu_text = f"{statistics.median(cpu):.0f}" if cpu else ""
            path = [r["path_cpu_us_per_request"] for r in mine if r.get("path_cpu_us_per_request")]
            path_text = f"{statistics.median(path):.0f}" if path else ""
            lines.append(
                f"| {conns} | {target} | {med['rps']:,.0f} | {med['p50_ms']:.3f} | "
                f"{med['p99_ms']:.3f} | {sum(r['errors'] for r in mine)} | {extra} | {cpu_text} "
                f"| {path_text} |"
            )
        for on in (g[1] for g in SIGNAL_GATEWAYS):
            pairs = [p for p in by_round.values() if {on, "gateway"} <= p.keys()]
            if not pairs:
                continue
            kept_ratios = [p[on]["rps"] / p["gateway"]["rps"] for p in pairs]
            kept = statistics.median(kept_ratios)
            cpu_ratio = [
                p[on]["gateway_cpu_us_per_request"] / p["gateway"]["gateway_cpu_us_per_request"]
                for p in pairs
                if p["gateway"]["gateway_cpu_us_per_request"]
            ]
            ratio_text = f"{statistics.median(cpu_ratio):.2f}x" if cpu_ratio else ""
            path_ratio = [
                p[on]["path_cpu_us_per_request"] / p["gateway"]["path_cpu_us_per_request"]
                for p in pairs
                if p["gateway"].get("path_cpu_us_per_request")
                and p[on].get("path_cpu_us_per_request")
            ]
            path_text = (
                f"{statistics.median(path_ratio):.2f}x{quartiles(path_ratio)} (kept if "
                f"CPU-bound: {1 / statistics.median(path_ratio):.1%})"
                if path_ratio
                else ""
            )
            if cpu_ratio:
                ratio_text += quartiles(cpu_ratio)
            # What the signals add to the gateway's p50: the median of the paired differences.
            p50_more = statistics.median(p[on]["p50_ms"] - p["gateway"]["p50_ms"] for p in pairs)
            lines.append(
                f"| {conns} | {on} / gateway (paired) | {kept:.1%}{quartiles(kept_ratios)} "
                f"| | | | {p50_more:+.3f} ms vs off | {ratio_text} | {path_text} |"
            )
        for on in (t[0] for t in TRACED_REPLICAS):
            pairs = [p for p in by_round.values() if {on, "direct"} <= p.keys()]
            if pairs:
                kept = statistics.median(p[on]["rps"] / p["direct"]["rps"] for p in pairs)
                path_ratio = [
                    p[on]["path_cpu_us_per_request"] / p["direct"]["path_cpu_us_per_request"]
                    for p in pairs
                    if p["direct"].get("path_cpu_us_per_request")
                    and p[on].get("path_cpu_us_per_request")
                ]
                path_text = f"{statistics.median(path_ratio):.2f}x" if path_ratio else ""
                lines.append(
                    f"| {conns} | {on} / direct (paired) | {kept:.1%} | | | | | | {path_text} |"
                )
        if "kserve" in medians:
            ratio = medians["gateway"] / medians["kserve"]
            lines.append(f"| {conns} | gateway / kserve | {ratio:.2f}x | | | | | | |")
    return "\n".join(lines)


def prepare(name: str) -> tuple[Path, Path, Path, Path, bytes]:
    """A results folder ``bench/results/NAME-<time>/`` (with ``logs/``), a scratch folder with
    the quickstart digits model trained in it, and a one-row OIP request body (file and bytes)."""
    out_dir = ROOT / "bench" / "results" / time.strftime(f"{name}-%Y%m%d-%H%M%S")
    (out_dir / "logs").mkdir(parents=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"kaip-bench-{name}-"))
    quickstart = scratch / "quickstart"
    shutil.copytree(ROOT / "examples" / "quickstart", quickstart)
    subprocess.run(
        [PYTHON, str(quickstart / "train.py"), str(quickstart / "model.joblib")], check=True
    )
    body_file = scratch / "body.json"
    body = OIP.body(request_rows(1).tolist())
    body_file.write_bytes(body)
    return out_dir, scratch, quickstart, body_file, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", default="8", help="comma-separated, e.g. 1,8,64")
    parser.add_argument("--quiet-cpu", type=float, default=0.25, help="wait below this CPU busy")
    parser.add_argument("--max-wait", type=float, default=600.0)
    parser.add_argument("--peer", choices=["kserve"], default=None, help="add a peer, direct")
    parser.add_argument("--signals", action="store_true", help="add a gateway, signals on")
    parser.add_argument(
        "--only",
        default="",
        help="measure only these targets (comma-separated names from the table, e.g. "
        "'gateway,gateway+signals'): shorter rounds put each pair closer together in time",
    )
    args = parser.parse_args()
    conns_list = [int(c) for c in args.connections.split(",")]

    out_dir, scratch, quickstart, body_file, body = prepare("gateway")

    replica_port_file, gateway_port_file = scratch / "replica.port", scratch / "gateway.port"
    replica = start(
        [PYTHON, "-m", "kaip.serving", str(quickstart / "kaip.yaml"), "--model", "digits",
         "--port", "0", "--port-file", str(replica_port_file)],
        0, out_dir / "logs" / "replica.log",
    )  # fmt: skip
    processes = [replica]
    peers: list[Server] = []
    try:
        replica_port = wait_port(replica_port_file, replica)
        wait_ready(replica_port, body)
        gateway = start(
            [PYTHON, str(Path(__file__).with_name("gateway_proc.py")), str(gateway_port_file),
             str(replica_port)],
            1, out_dir / "logs" / "gateway.log",
        )  # fmt: skip
        processes.append(gateway)
        gateway_port = wait_port(gateway_port_file, gateway)
        wait_ready(gateway_port, body)
        direct_answer, through_answer = post(replica_port, body)[1], post(gateway_port, body)[1]
        if OIP.predictions(direct_answer) != OIP.predictions(through_answer):
            raise SystemExit("the gateway changed the answer")
        targets = {"direct": replica_port, "gateway": gateway_port}
        behind = {"direct": replica_port, "gateway": replica_port}  # each target's replica
        pids = {"gateway": gateway.pid}
        # Every process a target's requests run through: its CPU per request is the path's.
        paths = {"direct": [replica.pid], "gateway": [gateway.pid, replica.pid]}
        if args.signals:
            sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
            threading.Thread(target=sink.serve_forever, daemon=True).start()
            sink_url = f"http://127.0.0.1:{sink.server_address[1]}"
            traced: dict[str, int] = {}  # replicas with tracing on, by target name
            for target, sampler, roots in TRACED_REPLICAS:
                env = {**traced_env(sampler), "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url,
                       "KAIP_TRACE_ROOTS": roots}  # fmt: skip
                port_file = scratch / f"{target}.port"
                process = start(
                    [PYTHON, "-m", "kaip.serving", str(quickstart / "kaip.yaml"), "--model",
                     "digits", "--port", "0", "--port-file", str(port_file)],
                    0, out_dir / "logs" / f"{target}.log", env,
                )  # fmt: skip
                processes.append(process)
                paths[target] = [process.pid]
                traced[target] = wait_port(port_file, process)
                wait_ready(traced[target], body)
                if target.startswith("direct"):
                    targets[target] = behind[target] = traced[target]
            for mode, target, sampler in SIGNAL_GATEWAYS:
                env = {**traced_env(sampler), "BENCH_SIGNALS": mode,
                       "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url}  # fmt: skip
                port_file = scratch / f"{target}.port"
                behind[target] = traced["behind+tracing"] if mode == "on" else replica_port
                signaled = start(
                    [PYTHON, str(Path(__file__).with_name("gateway_proc.py")), str(port_file),
                     str(behind[target])],
                    1, out_dir / "logs" / f"{target}.log", env,
                )  # fmt: skip
                processes.append(signaled)
                targets[target] = wait_port(port_file, signaled)
                pids[target] = signaled.pid
                paths[target] = [
                    signaled.pid,
                    *paths["behind+tracing" if mode == "on" else "direct"],
                ]
                wait_ready(targets[target], body)
        if args.peer:
            peer = start_peer(args.peer, scratch, out_dir, body)
            if peer is not None:
                peers.append(peer[0])
                targets[args.peer] = peer[1]

        if args.only:
            wanted = args.only.split(",")
            if unknown := [t for t in wanted if t not in targets]:
                raise SystemExit(f"--only: no target {unknown} here; the targets: {list(targets)}")
            targets = {t: targets[t] for t in wanted}
        waited = wait_quiet(args.quiet_cpu, args.max_wait)
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        records: list[dict[str, Any]] = []
        busy: list[float] = []
        for rnd in range(args.rounds):
            for conns in conns_list:
                order = list(targets) if rnd % 2 == 0 else list(reversed(targets))
                for target in order:
                    common = {"port": targets[target], "path": OIP.path, "body": body_file,
                              "connections": conns, "core": 1}  # fmt: skip
                    run_wrk(duration_s=args.warmup, **common)  # type: ignore[arg-type]
                    pid = pids.get(target)
                    # The replica's batches over the run (read outside the CPU measure).
                    batches = batch_totals(behind[target]) if target in behind else None
                    cpu_before = cpu_seconds(pid) if pid else 0.0
                    path_before = sum(cpu_seconds(p) for p in paths.get(target, []))
                    result = run_wrk(duration_s=args.duration, **common)  # type: ignore[arg-type]
                    cpu_us = path_us = rows_per_predict = None
                    if pid and result.requests:
                        cpu_us = (cpu_seconds(pid) - cpu_before) * 1e6 / result.requests
                    if target in paths and result.requests:
                        path_cpu = sum(cpu_seconds(p) for p in paths[target]) - path_before
                        path_us = path_cpu * 1e6 / result.requests
                    if batches is not None:
                        calls, rows = batch_totals(behind[target])
                        if calls > batches[0]:
                            rows_per_predict = (rows - batches[1]) / (calls - batches[0])
                    records.append(
                        result_row(target, conns, rnd, result, cpu_us, path_us, rows_per_predict)
                    )
                    print(
                        f"round {rnd} c={conns} {target:8s} {result.rps:8,.0f} req/s  "
                        f"p50 {result.p50_ms:.3f} ms  p99 {result.p99_ms:.3f} ms  "
                        f"errors {result.errors}"
                        + (f"  rows/predict {rows_per_predict:.2f}" if rows_per_predict else ""),
                        flush=True,
                    )
            busy.append(cpu_busy(1.0))
        load_after = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        for server in peers:
            server.stop()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(scratch, ignore_errors=True)

    report = table(records)
    context = (
        f"{args.rounds} rounds x {args.duration:g} s per run, wrk -t1 on core 1 with the gateway, "
        f"replica (and peer) on core 0; waited {waited:.0f} s for a quiet machine; "
        f"load average before {' '.join(load_before)}, after {' '.join(load_after)}; "
        f"CPU busy between rounds (idle sample) median {statistics.median(busy):.0%}"
        + (f"; OTLP exports received by the sink: {Sink.exports}" if args.signals else "")
    )
    (out_dir / "results.json").write_text(
        json.dumps({"records": records, "context": context}, indent=1)
    )
    (out_dir / "table.md").write_text(report + "\n\n" + context + "\n")
    print()
    print(report)
    print()
    print(context)
    print(f"results: {out_dir}")


if __name__ == "__main__":
    main()

"""make bench-serving: kaip's model server against its peers on one sklearn model, one machine.

Each round starts every server in turn (order rotates per round), times its start-up to the first
correct infer, checks its predictions against model.predict, then drives it with wrk for every
(rows, connections) pair: server pinned to core 0, wrk to core 1, loopback only. After every
run the server's predictions are checked again. kaip runs twice: "kaip" with its compiled
linear path and "kaip-predict" with it off (model.predict, as every peer); each row's log must
show the path it names. Before the rounds, kaip's compiled path is compared in-process with
model.predict on every row of the digits data the benchmark draws from. Results go to
bench/results/serving-<time>/ (results.json, table.md, server logs) and the table is printed.

Usage: run.py [--quick] [--rounds N] [--duration S] [--servers a,b,...]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from artifact import Artifact, build, check_rows, digits, fold, request_rows
from load import run_wrk
from process import Server
from protocol import Protocol
from report import ratios, table
from servers import ALL, REPO, SERVING_PATH, ServerDef, kaip_serve_available, serving_path

SERVER_CORE, LOAD_CORE = 0, 1
RESULTS = REPO / "bench" / "results"


def post(port: int, path: str, body: bytes, timeout_s: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def correct(protocol: Protocol, port: int, rows: np.ndarray, expected: np.ndarray) -> str | None:
    """None when the server predicts `expected` for `rows`, else what went wrong."""
    status, body = post(port, protocol.path, protocol.body(rows.tolist()))
    if status != 200:
        return f"HTTP {status}: {body[:300]!r}"
    got = protocol.predictions(body)
    if got != expected.tolist():
        return f"predictions differ: got {got[:10]}..., want {expected.tolist()[:10]}..."
    return None


def listeners_off_loopback(pids: list[int]) -> list[str]:
    """Listening sockets of these processes that are bound to a non-loopback address."""
    done = subprocess.run(["ss", "-Hltunp"], capture_output=True, text=True)
    wanted = {f"pid={pid}," for pid in pids}
    exposed = []
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) < 5 or not any(w in line for w in wanted):
            continue
        local = fields[4]
        host = local.rsplit(":", 1)[0].strip("[]")
        if not (host.startswith("127.") or host == "::1" or host.startswith("::ffff:127.")):
            name = line.split('(("', 1)[-1].split('"', 1)[0]
            exposed.append(f"{fields[0]} {local} ({name})")
    return sorted(set(exposed))


def compute_floor(model: Any) -> list[dict[str, Any]]:
    """In-process cost of one predict call (pipeline, folded arithmetic), pinned like a server."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {SERVER_CORE})
    folded = fold(model)
    out = []
    try:
        for rows in (1, 32):
            x = request_rows(rows)
            for name, fn in (
                ("pipeline.predict", model.predict),
                ("folded arithmetic", folded.predict),
            ):
                for _ in range(200):
                    fn(x)
                n, start = 2000, time.perf_counter()
                for _ in range(n):
                    fn(x)
                per_call = (time.perf_counter() - start) / n
                out.append(
                    {"kind": "floor", "what": name, "rows": rows, "us_per_call": per_call * 1e6}
                )
    finally:
        os.sched_setaffinity(0, previous)
    return out


def fast_path_check(model: Any) -> dict[str, Any]:
    """kaip's compiled linear path against model.predict on every digits row, both dtypes the
    server compiles for floats (FP32 requests arrive as float32)."""
    from kaip.serving.runtimes import linear

    compiled = linear.compile_linear(model)
    x_all, _ = digits()
    record: dict[str, Any] = {"kind": "fastpath", "rows": len(x_all), "compiled": bool(compiled)}
    if compiled is None:
        return record | {"mismatches": None}
    mismatches = {}
    for dtype in (np.float32, np.float64):
        x = x_all.astype(dtype)
        mismatches[np.dtype(dtype).name] = int((compiled(x) != model.predict(x)).sum())
    return record | {"mismatches": mismatches}


def cpu_busy(sample_s: float = 3.0) -> float:
    """Fraction of all cores busy over the sample (from /proc/stat)."""

    def totals() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total0, idle0 = totals()
    time.sleep(sample_s)
    total1, idle1 = totals()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_quiet(max_busy: float, max_wait_s: float) -> float:
    """Waits until the machine is quiet (CPU below max_busy, no Go builds); gives seconds waited."""
    start = time.monotonic()
    while True:
        busy = cpu_busy()
        builds = subprocess.run(["pgrep", "-f", "go build|compile"], capture_output=True).stdout
        if busy <= max_busy and not builds.strip():
            return time.monotonic() - start
        if time.monotonic() - start > max_wait_s:
            print(f"  machine still busy ({busy:.0%} CPU) after {max_wait_s:.0f} s; going on")
            return time.monotonic() - start
        print(f"  waiting for a quiet machine: {busy:.0%} CPU, builds: {bool(builds.strip())}")
        time.sleep(30)


def machine() -> dict[str, Any]:
    def sh(cmd: str) -> str:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

    return {
        "kind": "machine",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg": os.getloadavg(),
        "busy_builds": sh("pgrep -fc '[g]o build|[c]ompile' || true"),  # [g]: not this shell
        "cpu": sh("lscpu | sed -n 's/^Model name: *//p'"),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": sh("wrk --version 2>&1 | head -1"),
    }


def one_server(
    sdef: ServerDef,
    artifact: Artifact,
    expected: dict[str, np.ndarray],
    bodies: dict[tuple[str, int], Path],
    args: argparse.Namespace,
    out: Path,
    round_no: int,
) -> list[dict[str, Any]]:
    scratch = out / "scratch" / f"{sdef.name}-{round_no}"
    scratch.mkdir(parents=True, exist_ok=True)
    launch = sdef.launch(artifact, scratch)
    server = Server(
        sdef.name,
        launch.argv,
        cwd=launch.cwd,
        env=launch.env,
        log=out / "logs" / f"{sdef.name}-{round_no}.log",
        core=SERVER_CORE,
    )
    proto, port = sdef.protocol, launch.port
    records: list[dict[str, Any]] = []
    base = {"server": sdef.name, "round": round_no}
    try:
        first = request_rows(1)
        startup = server.wait_until(
            lambda: correct(proto, port, first, expected["load-1"]) is None,
            sdef.startup_timeout_s,
        )
        records.append({**base, "kind": "start", "startup_s": startup, "rss_bytes": server.rss()})
        exposed = listeners_off_loopback(server.pids())
        records.append({**base, "kind": "listeners", "off_loopback": exposed})
        if exposed:
            print(f"  {sdef.name}: listening off loopback: {', '.join(exposed)}", flush=True)
        problems = [
            correct(proto, port, check_rows(), expected["check"]),
            *(correct(proto, port, request_rows(n), expected[f"load-{n}"]) for n in args.rows),
        ]
        problem = next((p for p in problems if p), None)
        if problem is None and sdef.name in SERVING_PATH:
            served = serving_path(server.log.read_text(errors="replace"))
            if served != SERVING_PATH[sdef.name]:
                problem = f"its log says it served by {served}, not {SERVING_PATH[sdef.name]}"
        records.append({**base, "kind": "check", "ok": problem is None, "problem": problem})
        if problem:
            print(f"  {sdef.name}: CHECK FAILED, no load run: {problem}", flush=True)
            return records
        print(f"  {sdef.name}: ready in {startup:.1f} s, predictions correct", flush=True)
        for rows in args.rows:
            for conns in args.connections:
                common = {"port": port, "path": proto.path, "body": bodies[(proto.name, rows)]}
                if args.warmup > 0:
                    run_wrk(**common, connections=conns, duration_s=args.warmup, core=LOAD_CORE)
                result = run_wrk(
                    **common, connections=conns, duration_s=args.duration, core=LOAD_CORE
                )
                rss = server.rss()
                after = correct(proto, port, request_rows(rows), expected[f"load-{rows}"])
                if after:
                    print(f"  {sdef.name}: WRONG PREDICTIONS after the run: {after}", flush=True)
                records.append(
                    {
                        **base,
                        "kind": "load",
                        "rows": rows,
                        "connections": conns,
                        "rps": result.rps,
                        "requests": result.requests,
                        "p50_ms": result.p50_ms,
                        "p90_ms": result.p90_ms,
                        "p99_ms": result.p99_ms,
                        "max_ms": result.max_ms,
                        "status_errors": result.status_errors,
                        "socket_errors": result.socket_errors,
                        "errors": result.errors,
                        "rss_bytes": rss,
                        "processes": len(server.pids()),
                        "loadavg1": os.getloadavg()[0],
                        "correct_after": after is None,
                        "problem_after": after,
                    }
                )
                print(
                    f"  {sdef.name:9} rows={rows:<2} conns={conns:<2} {result.rps:9,.0f} req/s"
                    f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
                    f"  errors {result.errors}  rss {rss / 2**20:,.0f} MiB",
                    flush=True,
                )
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"  {sdef.name}: FAILED: {exc}", flush=True)
        records.append({**base, "kind": "failed", "error": str(exc)})
    finally:
        server.stop()
        for temp_dir in launch.temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, short runs (smoke)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load")
    parser.add_argument("--servers", default=",".join(s.name for s in ALL))
    parser.add_argument("--connections", default="1,8,64")
    parser.add_argument("--rows", default="1,32")
    parser.add_argument(
        "--quiet-cpu",
        type=float,
        default=None,
        help="before each round wait (up to --quiet-wait s) until total CPU busy <= this fraction",
    )
    parser.add_argument("--quiet-wait", type=float, default=1800.0)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 3.0, 1.0
    args.connections = [int(c) for c in args.connections.split(",")]
    args.rows = [int(r) for r in args.rows.split(",")]
    wanted = args.servers.split(",")
    unknown = set(wanted) - {s.name for s in ALL}
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}; known: {[s.name for s in ALL]}")

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"serving-{stamp}"
    out.mkdir(parents=True)
    artifact = build(RESULTS / "serving-model")
    import joblib

    model = joblib.load(artifact.path)
    expected = {"check": model.predict(check_rows())}
    for n in args.rows:
        expected[f"load-{n}"] = model.predict(request_rows(n))
    expected.setdefault("load-1", model.predict(request_rows(1)))
    bodies: dict[tuple[str, int], Path] = {}
    for sdef in ALL:
        for n in args.rows:
            key = (sdef.protocol.name, n)
            if key not in bodies:
                bodies[key] = out / "bodies" / f"{sdef.protocol.name}-{n}.json"
                bodies[key].parent.mkdir(exist_ok=True)
                bodies[key].write_bytes(sdef.protocol.body(request_rows(n).tolist()))

    records: list[dict[str, Any]] = [
        {"kind": "artifact", "path": str(artifact.path), "sha256": artifact.sha256},
        {"kind": "args", **{k: v for k, v in vars(args).items()}},
        machine(),
    ]
    print(f"model {artifact.path} sha256 {artifact.sha256}")
    print(f"machine: load {records[-1]['loadavg']}, builds running: {records[-1]['busy_builds']}")
    records += compute_floor(model)
    records.append(fast_path_check(model))
    print(fast_path_line(records[-1]), flush=True)

    servers = []
    for sdef in (s for s in ALL if s.name in wanted):
        why = sdef.unavailable() or (kaip_serve_available() if sdef.name == "kaip" else None)
        if why:
            print(f"skipping {sdef.name}: {why}")
            records.append({"kind": "unavailable", "server": sdef.name, "why": why})
        else:
            servers.append(sdef)

    for round_no in range(1, args.rounds + 1):
        shift = (round_no - 1) % max(len(servers), 1)
        order = servers[shift:] + servers[:shift]
        print(f"round {round_no}/{args.rounds}: {', '.join(s.name for s in order)}", flush=True)
        waited = wait_quiet(args.quiet_cpu, args.quiet_wait) if args.quiet_cpu is not None else 0
        records.append({**machine(), "round": round_no, "waited_s": waited, "cpu_busy": cpu_busy()})
        for sdef in order:
            records += one_server(sdef, artifact, expected, bodies, args, out, round_no)
        (out / "results.json").write_text(json.dumps(records, indent=1, default=str))
    records.append({**machine(), "round": "end"})

    text = render(records)
    (out / "results.json").write_text(json.dumps(records, indent=1, default=str))
    (out / "table.md").write_text(text)
    print()
    print(text)
    print(f"\nresults: {out}")


def fast_path_line(r: dict[str, Any]) -> str:
    if not r["compiled"]:
        return "kaip's compiled path: the model is not compiled (kaip serves it by predict)"
    bad = {dtype: n for dtype, n in r["mismatches"].items() if n}
    if bad:
        return f"kaip's compiled path DIFFERS from model.predict: {bad} of {r['rows']} rows"
    dtypes = " and ".join(r["mismatches"])
    return f"kaip's compiled path equals model.predict on all {r['rows']} digits rows ({dtypes})"


def render(records: list[dict[str, Any]]) -> str:
    parts = [table(records), ""]
    parts += [fast_path_line(r) for r in records if r["kind"] == "fastpath"] + [""]
    floor = [r for r in records if r["kind"] == "floor"]
    if floor:
        parts.append("In-process compute floor (one call, core 0):")
        parts += [f"- {r['what']}, {r['rows']} row(s): {r['us_per_call']:.1f} µs" for r in floor]
        parts.append("")
    rs = ratios(records)
    if rs:
        parts.append("kaip vs best peer (medians):")
        parts += rs
        parts.append("")
    for r in records:
        if r["kind"] in ("unavailable", "failed"):
            parts.append(f"- {r['server']}: {r['kind']}: {r.get('why') or r.get('error')}")
        if r["kind"] == "check" and not r["ok"]:
            parts.append(f"- {r['server']}: wrong predictions: {r['problem']}")
        if r["kind"] == "load" and r.get("problem_after"):
            parts.append(
                f"- {r['server']} ({r['rows']} rows, {r['connections']} conns, round "
                f"{r['round']}): wrong predictions after the run: {r['problem_after']}"
            )
        if r["kind"] == "listeners" and r["off_loopback"] and r["round"] == 1:
            exposed = ", ".join(r["off_loopback"])
            parts.append(
                f"- {r['server']}: listens off loopback (no traffic sent there): {exposed}"
            )
    loads = [r for r in records if r["kind"] == "machine"]
    parts.append("Machine load before each round (load average 1/5/15 min; CPU busy, both cores):")
    for r in loads:
        busy = f", CPU busy {r['cpu_busy']:.0%}" if "cpu_busy" in r else ""
        avg = "/".join(f"{v:.2f}" for v in r["loadavg"])
        parts.append(f"- round {r.get('round', 'start')}: {avg}{busy}")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    main()

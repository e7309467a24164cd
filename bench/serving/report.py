"""Turns the raw records of a run into the results table and the kaip-vs-peers ratios.

Pure: records (dicts, as saved in results.json) in, markdown out. Medians over rounds for
throughput, latency, RSS and start-up; errors are summed over rounds so that none hides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

REFERENCE = {"limit"}  # rows that are yardsticks, not peers
KAIP = ("kaip", "kaip-predict")  # kaip's rows: compiled linear path, and model.predict like peers


@dataclass(frozen=True)
class Cell:
    server: str
    rows: int
    connections: int
    rounds: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    rss_mib: float
    wrong: int = 0  # runs after which the server's predictions were no longer model.predict's


def cells(records: Iterable[dict[str, Any]]) -> list[Cell]:
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for r in records:
        if r.get("kind") == "load":
            groups.setdefault((r["server"], r["rows"], r["connections"]), []).append(r)
    out = []
    for (server, rows, conns), rs in groups.items():
        out.append(
            Cell(
                server=server,
                rows=rows,
                connections=conns,
                rounds=len(rs),
                rps=median(r["rps"] for r in rs),
                p50_ms=median(r["p50_ms"] for r in rs),
                p99_ms=median(r["p99_ms"] for r in rs),
                errors=sum(r["errors"] for r in rs),
                rss_mib=median(r["rss_bytes"] for r in rs) / 2**20,
                wrong=sum(1 for r in rs if r.get("correct_after") is False),
            )
        )
    return out


def startups(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    times: dict[str, list[float]] = {}
    for r in records:
        if r.get("kind") == "start":
            times.setdefault(r["server"], []).append(r["startup_s"])
    return {server: median(ts) for server, ts in times.items()}


def _order(servers: Sequence[str]) -> list[str]:
    first = [s for s in KAIP if s in servers]
    last = [s for s in servers if s in REFERENCE]
    return first + sorted(s for s in servers if s not in first and s not in last) + last


def table(records: Sequence[dict[str, Any]]) -> str:
    cs = cells(records)
    starts = startups(records)
    lines = [
        "| server | rows | conns | req/s | p50 ms | p99 ms | errors | RSS MiB | start s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_server: dict[str, list[Cell]] = {}
    for c in cs:
        by_server.setdefault(c.server, []).append(c)
    for server in _order(list(by_server)):
        for c in sorted(by_server[server], key=lambda c: (c.rows, c.connections)):
            start = starts.get(server)
            name = f"{server} (WRONG after {c.wrong} run(s))" if c.wrong else server
            lines.append(
                f"| {name} | {c.rows} | {c.connections} | {c.rps:,.0f} | {c.p50_ms:.2f} "
                f"| {c.p99_ms:.2f} | {c.errors} | {c.rss_mib:,.0f} "
                f"| {'' if start is None else f'{start:.1f}'} |"
            )
    return "\n".join(lines)


def ratios(records: Sequence[dict[str, Any]], rows: int = 1) -> list[str]:
    """Each kaip row against the best peer (by req/s) at each connection count, for `rows` rows,
    and the compiled path's share (kaip over kaip-predict)."""
    cs = cells(records)
    lines = []
    for conns in sorted({c.connections for c in cs}):
        here = {c.server: c for c in cs if c.rows == rows and c.connections == conns}
        peers = [c for s, c in here.items() if s not in KAIP and s not in REFERENCE]
        for name in KAIP:
            kaip = here.get(name)
            if kaip is None or not peers:
                continue
            best = max(peers, key=lambda c: c.rps)
            lines.append(
                f"- {conns} conn, {rows} row: {name} {kaip.rps:,.0f} req/s vs best peer "
                f"{best.server} {best.rps:,.0f} req/s = **{kaip.rps / best.rps:.2f}x**; "
                f"p99 {kaip.p99_ms:.2f} ms vs {best.p99_ms:.2f} ms"
            )
        if all(name in here for name in KAIP):
            fast, slow = here["kaip"], here["kaip-predict"]
            lines.append(
                f"- {conns} conn, {rows} row: compiled path vs predict inside kaip: "
                f"{fast.rps:,.0f} vs {slow.rps:,.0f} req/s = {fast.rps / slow.rps:.2f}x"
            )
    return lines

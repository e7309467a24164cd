"""Paired rounds of a signals on/off bench, one run or several pooled, with bootstrap intervals.

Usage: .venv/bin/python bench/gateway/paired.py bench/results/gateway-A [gateway-B ...]
                                                [--on gateway+signals] [--off gateway]

Reads each run's ``results.json`` (``run.py --signals --only gateway,gateway+signals``) and
pairs ``--on`` with ``--off`` round by round. For each run, and for all runs' rounds pooled:
the median req/s kept (on over off), its middle half and a bootstrap 95 % interval of the
median (10,000 resamples of the paired rounds, a fixed seed), the rounds at 95 % or more; the
gateway's CPU µs per request more, the replica's (the path's minus the gateway's: the replica
behind each) more, and the p50 added, each a median of paired differences with its interval;
and the replica's rows per predict call behind each (its batch sizes, when run.py recorded them).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Pair = tuple[dict[str, Any], dict[str, Any]]


def pairs(run: Path, on: str, off: str) -> list[Pair]:
    records = json.loads((run / "results.json").read_text())["records"]
    by_round: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for r in records:
        by_round.setdefault((r["connections"], r["round"]), {})[r["target"]] = r
    return [(p[on], p[off]) for _, p in sorted(by_round.items()) if {on, off} <= p.keys()]


def interval(values: Sequence[float], resamples: int = 10_000) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the medians of ``resamples`` resamples."""
    rng = random.Random(14)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def replica_us(r: dict[str, Any]) -> float | None:
    path, gateway = r.get("path_cpu_us_per_request"), r.get("gateway_cpu_us_per_request")
    return path - gateway if path and gateway else None


def summary(name: str, rounds: list[Pair]) -> list[str]:
    lines = [f"{name}: {len(rounds)} paired rounds"]

    def measure(label: str, f: Callable[[Pair], float | None], fmt: str) -> None:
        values = [v for p in rounds if (v := f(p)) is not None]
        if len(values) < 2:
            return
        q1, _, q3 = statistics.quantiles(values, n=4)
        low, high = interval(values)
        lines.append(
            f"  {label}: median {fmt.format(statistics.median(values))} "
            f"(IQR {fmt.format(q1)} to {fmt.format(q3)}; bootstrap 95 % "
            f"{fmt.format(low)} to {fmt.format(high)})"
        )

    measure("req/s kept", lambda p: p[0]["rps"] / p[1]["rps"], "{:.1%}")
    kept = [p[0]["rps"] / p[1]["rps"] for p in rounds]
    lines.append(f"  rounds at 95 % or more: {sum(k >= 0.95 for k in kept)} of {len(kept)}")

    def more(key: str) -> Callable[[Pair], float | None]:
        return lambda p: p[0][key] - p[1][key] if p[0].get(key) and p[1].get(key) else None

    measure("gateway CPU µs/request more", more("gateway_cpu_us_per_request"), "{:+.1f}")

    def replica_more(p: Pair) -> float | None:
        a, b = replica_us(p[0]), replica_us(p[1])
        return a - b if a is not None and b is not None else None

    measure("replica CPU µs/request more (path minus gateway)", replica_more, "{:+.1f}")
    measure("path CPU µs/request more", more("path_cpu_us_per_request"), "{:+.1f}")
    measure("p50 added, ms", lambda p: p[0]["p50_ms"] - p[1]["p50_ms"], "{:+.3f}")
    for side, label in ((0, "on"), (1, "off")):
        rows = [r for p in rounds if (r := p[side].get("replica_rows_per_predict"))]
        cpu = [c for p in rounds if (c := replica_us(p[side])) is not None]
        text = f"  replica behind {label}: CPU µs/request median {statistics.median(cpu):.1f}"
        if rows:
            text += f", rows per predict median {statistics.median(rows):.2f}"
        lines.append(text)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench/results/gateway-* folders")
    parser.add_argument("--on", default="gateway+signals")
    parser.add_argument("--off", default="gateway")
    args = parser.parse_args()
    pooled: list[Pair] = []
    for run in args.runs:
        rounds = pairs(run, args.on, args.off)
        pooled += rounds
        print("\n".join(summary(f"{run.name} ({args.on} vs {args.off})", rounds)))
    if len(args.runs) > 1:
        print("\n".join(summary("pooled", pooled)))


if __name__ == "__main__":
    main()

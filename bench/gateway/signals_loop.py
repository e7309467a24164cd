"""The gateway's per-request signal work alone, without sockets: CPU µs per request.

Usage: .venv/bin/python bench/gateway/signals_loop.py [--requests 20000] [--rounds 11]

Runs what :class:`~kaip.local.gateway.forward.Forwarder` does for one proxied request around
the request head (the trace context passed on, ``request_head``, the observation's begin,
attempt, attempt done and finish) in three modes: ``off`` (``observe=False``: a client's
``traceparent`` passed on, none minted), ``metrics`` (``kaip up``'s default) and ``on``
(metrics and a span recorder with kaip's default sampler; its few sampled spans go to a list,
so the SDK's export, which runs on its own thread, is not in these numbers). Rounds alternate
the order of the modes; the time is the process's CPU time (``time.process_time``), which a
loaded machine's preemption does not inflate. Prints each mode's median and the medians'
differences from ``off``: the signals' own cost per request on the gateway's event loop.
"""

from __future__ import annotations

import argparse
import statistics
import time

from kaip.local.gateway.http1 import request_head
from kaip.local.gateway.routes import Backend
from kaip.local.gateway.signals import GatewaySignals, Observation
from kaip.local.gateway.trace import passed_on, with_traceparent
from kaip.protocol.upstream import Outcome
from kaip.telemetry.spans import FinishedSpan, SpanRecorder

HEADERS = [
    (b"Host", b"127.0.0.1:8080"),
    (b"User-Agent", b"wrk"),
    (b"Content-Type", b"application/json"),
    (b"Content-Length", b"420"),
]
BODY = b"x" * 420  # about the bench's one-row OIP request
TARGET = b"/v2/models/digits/infer"
REPLICA = Backend(replica="digits-0", revision="1", host="127.0.0.1", port=9000)


def one_request(signals: GatewaySignals | None) -> bytes:
    """As the gateway and its forwarder: the arrival's clock read, the trace (an object only
    when sampled), the head, one attempt with the replica's busy time, the request's counts."""
    arrival = time.monotonic()
    observed: Observation | None = None
    head = b""
    if signals is not None and signals.tracer is not None:
        observed, head, _ = signals.trace("digits", "bench", b"POST", TARGET, HEADERS)
    first = observed.head_traceparent() if observed is not None else head or None
    traceparent = first or passed_on(HEADERS)
    data = request_head(b"POST", TARGET, HEADERS, len(BODY), traceparent, (), b"127.0.0.1")
    data += BODY
    if signals is not None:
        replica = REPLICA
        if observed is not None and (
            mine := observed.attempt(replica.replica, replica.host, replica.port, 0)
        ):
            data, traceparent = with_traceparent(data, traceparent, mine), mine
        busy = signals.busy(replica.replica)
        busy.since = time.perf_counter()
        busy.busy_s += time.perf_counter() - busy.since
        busy.requests += 1
        if observed is not None:
            observed.revision = REPLICA.revision
            observed.attempt_done(Outcome.OK, 200)
        key = ("model", "digits", REPLICA.revision, "bench")
        signals.count(key, 200, time.monotonic() - arrival)
        if observed is not None:
            observed.finish(200)
    return data


def per_request_us(mode: str, requests: int, spans: list[FinishedSpan]) -> float:
    signals = None
    if mode == "metrics":
        signals = GatewaySignals(None)
    elif mode == "on":
        signals = GatewaySignals(SpanRecorder(spans.append))
    started = time.process_time()
    for _ in range(requests):
        one_request(signals)
    return (time.process_time() - started) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    modes = ("off", "metrics", "on")
    results: dict[str, list[float]] = {mode: [] for mode in modes}
    spans: list[FinishedSpan] = []
    for rnd in range(args.rounds):
        for mode in modes if rnd % 2 == 0 else reversed(modes):
            results[mode].append(per_request_us(mode, args.requests, spans))
    off = statistics.median(results["off"])
    for mode in modes:
        median = statistics.median(results[mode])
        rounds = " ".join(f"{v:.2f}" for v in results[mode])
        print(f"{mode:8s} {median:6.2f} µs/request ({median - off:+.2f} vs off)  rounds: {rounds}")
    print(f"sampled spans recorded: {len(spans)}")


if __name__ == "__main__":
    main()

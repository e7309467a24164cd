"""The GenAI gates (issue 17 #4): p95 time to first token and per output token, absolute and
against stable, judged by kaip.policy.rollout on both targets; the histogram quantile kaip up
computes, by Prometheus's rule; the per-step window of the replicas' histograms."""

from __future__ import annotations

import doctest
import math

import pytest
from prometheus_client import generate_latest

import kaip.policy.genai
from kaip.local.controller.genai_evidence import GenAIWindow, ReplicaHistograms, parse
from kaip.policy import Evidence, rollout
from kaip.policy.genai import histogram_quantile
from kaip.serving.metrics import GENAI_DURATION_BUCKETS, GenAIMetrics, ServerMetrics
from kaip.spec.rollout import Gates, RolloutStep

STEPS = [RolloutStep(weight=50, pause_seconds=5), RolloutStep(weight=100, pause_seconds=5)]


def genai(requests: int, ttft: float | None, tpot: float | None = 10.0) -> Evidence:
    return Evidence(requests, 0, (5.0,) * requests, ttft, tpot)


def judge(canary: Evidence, stable: Evidence, **gates: float) -> tuple[str, str]:
    verdict = rollout(
        step_index=0, steps=STEPS, seconds_in_step=6, canary=canary, stable=stable,
        gates=Gates(min_requests=20, **gates),
    )  # fmt: skip
    return verdict.action, verdict.reason


def test_the_doctests_hold() -> None:
    assert doctest.testmod(kaip.policy.genai).failed == 0


def test_a_canary_over_the_ttft_limit_is_rolled_back_naming_the_gate() -> None:
    action, reason = judge(genai(30, 624.0), genai(300, 312.0), max_p95_time_to_first_token_ms=450)
    assert action == "rollback"
    assert reason == "p95 time to first token 624.0 ms exceeds maxP95TimeToFirstTokenMs 450"
    assert judge(genai(30, 312.0), genai(300, 312.0), max_p95_time_to_first_token_ms=450)[0] == (
        "advance"
    )


def test_a_canary_over_the_tpot_limit_is_rolled_back() -> None:
    action, reason = judge(genai(30, 100.0, 31.2), genai(30, 100.0, 15.6),
                           max_p95_time_per_output_token_ms=20)  # fmt: skip
    assert action == "rollback"
    assert reason == "p95 time per output token 31.2 ms exceeds maxP95TimePerOutputTokenMs 20"


def test_ratio_gates_compare_with_stable_and_wait_for_its_baseline() -> None:
    action, reason = judge(genai(30, 624.0), genai(300, 312.0), max_time_to_first_token_ratio=1.5)
    assert action == "rollback"
    assert reason == (
        "p95 time to first token 624.0 ms is 2.00x stable's 312.0 ms: over "
        "maxTimeToFirstTokenRatio 1.5"
    )
    same = judge(genai(30, 312.0), genai(300, 312.0), max_time_to_first_token_ratio=1.5)
    assert same[0] == "advance"
    no_baseline = judge(genai(30, 624.0), genai(0, None), max_time_to_first_token_ratio=1.5)
    assert no_baseline[0] == "advance"  # stable served nothing (the 100 % step): no ratio
    slow_tokens = judge(genai(30, 10.0, 40.0), genai(30, 10.0, 10.0),
                        max_time_per_output_token_ratio=3)  # fmt: skip
    assert slow_tokens[0] == "rollback" and "maxTimePerOutputTokenRatio 3" in slow_tokens[1]


def test_no_ttft_observed_holds_the_step_as_missing_evidence_does() -> None:
    action, reason = judge(genai(30, None), genai(300, 312.0), max_p95_time_to_first_token_ms=450)
    assert action == "hold"
    assert reason == (
        "waiting for evidence: no time to first token observed yet for "
        "maxP95TimeToFirstTokenMs at 50%"
    )
    late = rollout(
        step_index=0, steps=STEPS, seconds_in_step=100, canary=genai(30, None),
        stable=genai(300, 312.0), gates=Gates(min_requests=20, max_p95_time_to_first_token_ms=450),
        progress_deadline_seconds=60,
    )  # fmt: skip
    assert late.action == "abort" and "no time to first token observed yet" in late.reason
    # without a GenAI gate nothing waits for GenAI evidence
    assert judge(genai(30, None), genai(300, None))[0] == "advance"


def test_genai_gates_wait_for_min_requests() -> None:
    assert judge(genai(5, 9000.0), genai(300, 312.0), max_p95_time_to_first_token_ms=450)[0] == (
        "hold"
    )


def test_evidence_keeps_the_latest_p95() -> None:
    merged = genai(10, 100.0, 5.0).plus(Evidence(5, 0, (), None, 7.0))
    assert (merged.requests, merged.ttft_p95_ms, merged.tpot_p95_ms) == (15, 100.0, 7.0)


def test_quantile_follows_prometheus_on_doubling_buckets() -> None:
    """Doubling buckets (the request duration's): 100 ms reads as 156 ms and 200 ms as 312 ms."""

    def cumulative(seconds: float, count: int) -> dict[float, float]:
        return {le: (count if seconds <= le else 0) for le in (*GENAI_DURATION_BUCKETS, math.inf)}

    assert histogram_quantile(0.95, cumulative(0.1, 20)) == pytest.approx(0.156)
    assert histogram_quantile(0.95, cumulative(0.2, 20)) == pytest.approx(0.312)
    assert histogram_quantile(0.95, cumulative(0.4, 20)) == pytest.approx(0.624)
    assert histogram_quantile(0.95, {math.inf: 3}) is None  # no finite bound to answer with
    assert histogram_quantile(0.95, {0.1: 3}) is None  # no +Inf bucket: not a histogram
    with pytest.raises(ValueError):
        histogram_quantile(95, {math.inf: 3})


def test_a_200_ms_first_token_reads_within_one_semconv_bucket_of_200_ms() -> None:
    """A replica's TTFT histogram has the GenAI semantic conventions' boundaries (..., 0.1,
    0.25, 0.5, ...): twenty 200 ms first tokens, recorded and exposed as a replica does and read
    back as the gate reads them, give a p95 in (0.1, 0.25], 150 ms wide: 242.5 ms, where the
    doubling buckets gave 312 ms. Time per output token likewise: 30 ms reads in (0.025, 0.05]."""
    server = ServerMetrics("m", "r1")
    genai = GenAIMetrics(server)
    for _ in range(20):
        genai.record("chat", "m", 0.2 + 9 * 0.03, ttft=0.2, tokens=10)
    ttft, tpot = parse(generate_latest(server.registry).decode())
    p95 = histogram_quantile(0.95, ttft)
    assert p95 is not None and 0.2 <= p95 <= 0.25
    assert p95 == pytest.approx(0.1 + 0.15 * 0.95)
    per_token = histogram_quantile(0.95, tpot)
    assert per_token is not None and 0.03 <= per_token <= 0.05


EXPOSITION = """\
# TYPE gen_ai_server_time_to_first_token_seconds histogram
gen_ai_server_time_to_first_token_seconds_bucket{{op="chat",le="0.16"}} {chat_low}
gen_ai_server_time_to_first_token_seconds_bucket{{op="chat",le="0.32"}} {chat}
gen_ai_server_time_to_first_token_seconds_bucket{{op="chat",le="+Inf"}} {chat}
gen_ai_server_time_to_first_token_seconds_count{{op="chat"}} {chat}
gen_ai_server_time_to_first_token_seconds_sum{{op="chat"}} 1.0
gen_ai_server_time_to_first_token_seconds_bucket{{op="text_completion",le="0.16"}} 0
gen_ai_server_time_to_first_token_seconds_bucket{{op="text_completion",le="0.32"}} {text}
gen_ai_server_time_to_first_token_seconds_bucket{{op="text_completion",le="+Inf"}} {text}
# TYPE gen_ai_server_time_per_output_token_seconds histogram
gen_ai_server_time_per_output_token_seconds_bucket{{le="0.01"}} {chat}
gen_ai_server_time_per_output_token_seconds_bucket{{le="+Inf"}} {chat}
"""


def read(revision: str, chat: int, text: int = 0, chat_low: int = 0) -> ReplicaHistograms:
    ttft, tpot = parse(EXPOSITION.format(chat=chat, text=text, chat_low=chat_low))
    return ReplicaHistograms(revision, ttft, tpot)


def test_the_window_counts_only_what_each_replica_gained_this_step() -> None:
    assert parse(EXPOSITION.format(chat=4, text=2, chat_low=1))[0] == {
        0.16: 1,
        0.32: 6,
        math.inf: 6,
    }
    window = GenAIWindow()
    window.fold({"stable-1": read("s", chat=500, chat_low=500)})  # the baseline: fast history
    assert window.p95_ms("s") == (None, None)
    window.fold({"stable-1": read("s", chat=520, chat_low=500), "canary-1": read("c", chat=10)})
    # stable's 20 new answers all fell in (0.16, 0.32]; the canary, first seen now, counts whole
    assert window.p95_ms("s")[0] == pytest.approx(312.0)
    assert window.p95_ms("c")[0] == pytest.approx(312.0)
    assert window.p95_ms("c")[1] == pytest.approx(9.5)
    window.fold({"canary-1": read("c", chat=3)})  # restarted: its counts began again
    assert window.ttft["c"][math.inf] == 13
    window.new_step()
    window.fold({"canary-1": read("c", chat=7)})  # the new step's baseline
    assert window.p95_ms("c") == (None, None)
    window.fold({"canary-1": read("c", chat=9, text=1)})
    assert window.ttft["c"][math.inf] == 3

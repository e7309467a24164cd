"""Triton's statistics: what one server counts, and the gateway's sum over replicas."""

from __future__ import annotations

from typing import Any

from kaip.protocol.statistics import Execution, InferenceStats, merge_model_stats

NS = 1_000_000_000


def test_a_batch_of_two_requests_counts_one_execution_and_two_inferences() -> None:
    stats = InferenceStats()
    shared = Execution(rows=3, merge_s=0.001, predict_s=0.010, split_s=0.002, ok=True)
    stats.executed(shared)
    stats.served(1, 0.004, shared)
    stats.served(2, 0.005, shared)
    stats.request_done(True, 0.020, decode_s=0.0005, encode_s=0.0007)
    stats.request_done(True, 0.021, decode_s=0.0005, encode_s=0.0007)
    stats.request_done(False, 0.001, decode_s=0.0, encode_s=0.0)
    doc = stats.model_stat("simple", "1")
    assert doc["name"] == "simple" and doc["version"] == "1"
    assert doc["inference_count"] == 3 and doc["execution_count"] == 1
    inference = doc["inference_stats"]
    assert inference["success"] == {"count": 2, "ns": int(0.020 * NS) + int(0.021 * NS)}
    assert inference["fail"] == {"count": 1, "ns": int(0.001 * NS)}
    assert inference["queue"] == {"count": 2, "ns": int(0.004 * NS) + int(0.005 * NS)}
    assert inference["compute_infer"] == {"count": 2, "ns": 2 * int(0.010 * NS)}
    assert inference["compute_input"]["count"] == 2
    assert inference["compute_input"]["ns"] == 2 * int(0.001 * NS) + 2 * int(0.0005 * NS)
    assert inference["compute_output"]["ns"] == 2 * int(0.002 * NS) + 2 * int(0.0007 * NS)
    assert doc["batch_stats"] == [
        {
            "batch_size": 3,
            "compute_input": {"count": 1, "ns": int(0.001 * NS)},
            "compute_infer": {"count": 1, "ns": int(0.010 * NS)},
            "compute_output": {"count": 1, "ns": int(0.002 * NS)},
        }
    ]
    assert doc["last_inference"] > 0


def test_a_failed_execution_is_not_counted() -> None:
    stats = InferenceStats()
    stats.executed(Execution(1, 0.0, 0.01, 0.0, ok=False))
    doc = stats.model_stat("m", "1")
    assert doc["execution_count"] == 0 and doc["batch_stats"] == []


def _part(count: int, ns: int, last: int, batch_sizes: dict[int, int]) -> dict[str, Any]:
    stats = InferenceStats()
    doc = stats.model_stat("m", "r1")
    doc["inference_count"] = count
    doc["execution_count"] = count
    doc["last_inference"] = last
    doc["inference_stats"]["success"] = {"count": count, "ns": ns}
    doc["batch_stats"] = [
        {
            "batch_size": size,
            "compute_input": {"count": n, "ns": 1},
            "compute_infer": {"count": n, "ns": 10},
            "compute_output": {"count": n, "ns": 1},
        }
        for size, n in batch_sizes.items()
    ]
    return doc


def test_merge_sums_replicas_by_field_and_batch_size() -> None:
    merged = merge_model_stats(
        "served/name",
        "r1",
        [_part(3, 300, 1000, {1: 3}), _part(5, 500, 2000, {1: 1, 4: 1}), None, {"junk": True}],
    )
    assert merged["name"] == "served/name" and merged["version"] == "r1"
    assert merged["inference_count"] == 8 and merged["execution_count"] == 8
    assert merged["last_inference"] == 2000
    assert merged["inference_stats"]["success"] == {"count": 8, "ns": 800}
    assert merged["inference_stats"]["fail"] == {"count": 0, "ns": 0}
    assert [(b["batch_size"], b["compute_infer"]) for b in merged["batch_stats"]] == [
        (1, {"count": 4, "ns": 20}),
        (4, {"count": 1, "ns": 10}),
    ]


def test_merge_ignores_fields_of_the_wrong_type() -> None:
    odd = {"inference_count": "7", "inference_stats": {"success": {"count": -1, "ns": True}},
           "batch_stats": [{"batch_size": 0}, "x"]}  # fmt: skip
    merged = merge_model_stats("m", "1", [odd])
    assert merged["inference_count"] == 0
    assert merged["inference_stats"]["success"] == {"count": 0, "ns": 0}
    assert merged["batch_stats"] == []

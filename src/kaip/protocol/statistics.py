"""Triton's statistics extension: what one model server counts, and the JSON Triton clients read.

``GET /v2/models[/{name}[/versions/{v}]]/stats`` answers ``{"model_stats": [...]}`` with one
entry per model version, in the format of Triton's statistics extension
(``docs/protocol/extension_statistics.md`` in triton-inference-server/server). kaip measures each
field at the point that matches Triton's definition:

``success`` / ``fail``
    every OIP infer request, from its first byte read to its response written, by outcome.
``queue``
    from the request joining the batcher's queue to its batch starting.
``compute_input``
    decoding the body into arrays and checking them against the model, plus merging the batch's
    rows into one array per input (0 ns when a batch of one needs no merging).
``compute_infer``
    the model's ``predict`` call on the batch the request was part of.
``compute_output``
    splitting the batch's outputs back into the request's rows and encoding its response.
``inference_count`` / ``execution_count``
    rows of successful requests / successful ``predict`` calls; ``batch_stats`` counts those
    calls by their number of rows.

Counts of ``queue`` and the three ``compute_*`` entries are successful requests, as in Triton.
OpenAI requests (generation, embeddings) are not OIP inferences and are not counted here.
Counters live as long as the process; the gateway sums them over a revision's live replicas with
:func:`merge_model_stats`. Updated on the event loop only, so no locks. Never does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_NS = 1_000_000_000
INFERENCE_FIELDS = ("success", "fail", "queue", "compute_input", "compute_infer",
                    "compute_output", "cache_hit", "cache_miss")  # fmt: skip
BATCH_FIELDS = ("compute_input", "compute_infer", "compute_output")


@dataclass(slots=True)
class Duration:
    """Triton's ``$duration_stat``: how many times, and how many nanoseconds in all."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * _NS)

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class Execution:
    """One ``predict`` call: its rows and the seconds spent merging, predicting and splitting."""

    rows: int
    merge_s: float
    predict_s: float
    split_s: float
    ok: bool


@dataclass
class _BatchSize:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


class InferenceStats:
    """The statistics of one served model (one version), since the process started."""

    def __init__(self) -> None:
        self.success = Duration()
        self.fail = Duration()
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self._batches: dict[int, _BatchSize] = {}

    def request_done(self, ok: bool, seconds: float, decode_s: float, encode_s: float) -> None:
        """An infer request was answered; on success, add its HTTP-side input and output work."""
        if ok:
            self.success.add(seconds)
            self.compute_input.ns += int(decode_s * _NS)
            self.compute_output.ns += int(encode_s * _NS)
        else:
            self.fail.add(seconds)
        self.last_inference_ms = int(time.time() * 1000)

    def executed(self, execution: Execution) -> None:
        """One predict call finished (its requests are counted by :meth:`served`)."""
        if not execution.ok:
            return
        self.execution_count += 1
        size = self._batches.get(execution.rows)
        if size is None:
            size = self._batches[execution.rows] = _BatchSize()
        size.compute_input.add(execution.merge_s)
        size.compute_infer.add(execution.predict_s)
        size.compute_output.add(execution.split_s)

    def served(self, rows: int, queue_s: float, execution: Execution) -> None:
        """One request's share of a successful predict call."""
        self.inference_count += rows
        self.queue.add(queue_s)
        self.compute_input.add(execution.merge_s)
        self.compute_infer.add(execution.predict_s)
        self.compute_output.add(execution.split_s)

    def model_stat(self, name: str, version: str) -> dict[str, Any]:
        """This model's ``$model_stat`` object under ``name`` and ``version``."""
        inference = {
            "success": self.success.to_json(),
            "fail": self.fail.to_json(),
            "queue": self.queue.to_json(),
            "compute_input": self.compute_input.to_json(),
            "compute_infer": self.compute_infer.to_json(),
            "compute_output": self.compute_output.to_json(),
            "cache_hit": Duration().to_json(),  # kaip has no response cache
            "cache_miss": Duration().to_json(),
        }
        batches = [
            {
                "batch_size": rows,
                "compute_input": size.compute_input.to_json(),
                "compute_infer": size.compute_infer.to_json(),
                "compute_output": size.compute_output.to_json(),
            }
            for rows, size in sorted(self._batches.items())
        ]
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": inference,
            "response_stats": {},
            "batch_stats": batches,
            "memory_usage": [],
        }


def _count(raw: Any) -> int:
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0 else 0


def _duration(raw: Any) -> Duration:
    if not isinstance(raw, Mapping):
        return Duration()
    return Duration(_count(raw.get("count")), _count(raw.get("ns")))


def _add(total: Duration, part: Duration) -> None:
    total.count += part.count
    total.ns += part.ns


def merge_model_stats(name: str, version: str, parts: Iterable[Any]) -> dict[str, Any]:
    """One ``$model_stat`` summing those of several replicas of one version.

    Counts and durations add up, ``last_inference`` is the latest, batch statistics add up by
    batch size. A part that is not a ``$model_stat`` object (or a field of the wrong type) counts
    as zeros, so one odd replica cannot break the answer.
    """
    totals = {key: Duration() for key in INFERENCE_FIELDS}
    batches: dict[int, dict[str, Duration]] = {}
    inference_count = execution_count = last = 0
    for part in parts:
        if not isinstance(part, Mapping):
            continue
        inference_count += _count(part.get("inference_count"))
        execution_count += _count(part.get("execution_count"))
        last = max(last, _count(part.get("last_inference")))
        stats = part.get("inference_stats")
        if isinstance(stats, Mapping):
            for key in INFERENCE_FIELDS:
                _add(totals[key], _duration(stats.get(key)))
        raw_batches = part.get("batch_stats")
        for batch in raw_batches if isinstance(raw_batches, Sequence) else ():
            if not isinstance(batch, Mapping) or _count(batch.get("batch_size")) < 1:
                continue
            size = batches.setdefault(
                _count(batch["batch_size"]), {key: Duration() for key in BATCH_FIELDS}
            )
            for key in BATCH_FIELDS:
                _add(size[key], _duration(batch.get(key)))
    return {
        "name": name,
        "version": version,
        "last_inference": last,
        "inference_count": inference_count,
        "execution_count": execution_count,
        "inference_stats": {key: d.to_json() for key, d in totals.items()},
        "response_stats": {},
        "batch_stats": [
            {"batch_size": rows, **{key: d.to_json() for key, d in size.items()}}
            for rows, size in sorted(batches.items())
        ],
        "memory_usage": [],
    }

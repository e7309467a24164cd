"""How an engine's Prometheus metrics read in kaip's names (``serve.engine``).

An engine differs from another only in what :class:`~kaip.render.engines.EngineProfile` holds
(its command line, health path, metrics path and metric map); everything else (starting it,
waiting for it, relaying to it) is :mod:`kaip.serving.relay`, the same for all.

The metric map is a pure function, :func:`translate`, from the engine's Prometheus text to an
:class:`EngineSnapshot`: the engine's counts in the keys kaip's own llama.cpp runtime reports
(:meth:`kaip.serving.metrics.ServerMetrics._engine_families`: tokens by kind, requests running,
KV-cache use) plus ``waiting`` (kaip's queue depth), and the engine's own latency histograms under
``kaip_engine_*`` names. Worked example, vLLM's text::

    vllm:num_requests_running{model_name="m"} 8.0
    vllm:num_requests_waiting{model_name="m"} 2.0
    vllm:kv_cache_usage_perc{model_name="m"} 0.25
    vllm:generation_tokens_total{model_name="m"} 27453.0

reads as ``busy=8, waiting=2, kv_cache_usage=0.25, generated_tokens=27453``, shown on the
replica's ``/metrics`` as ``kaip_engine_busy 8``, ``kaip_queue_depth_requests 2``,
``kaip_kv_cache_usage_ratio 0.25`` and ``kaip_engine_tokens_total{kind="generated"} 27453``
(labels ``model`` and ``revision`` added). A sample with several label sets (vLLM's ``engine``
index under data parallelism) is summed; a ratio (KV-cache use) is averaged.

The GenAI semantic-convention histograms (``gen_ai_server_time_to_first_token_seconds`` ...) are
not the engine's: the relay measures them on every answer it passes on, as the built-in runtime
does, so gates and dashboards read one measurement whatever the engine. The engine's own
histograms stay beside them as ``kaip_engine_time_to_first_token_seconds`` and the like.

Never starts a process and never does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

from kaip.render.engines import PROFILES, EngineProfile, profile

MAX_METRICS_BYTES: Final = 4 * 2**20
"""An engine's /metrics text beyond this is not read (the scrape answers kaip's own metrics)."""

ENGINE_HISTOGRAMS: Final[tuple[str, ...]] = (
    "kaip_engine_time_to_first_token_seconds",
    "kaip_engine_time_per_output_token_seconds",
    "kaip_engine_request_duration_seconds",
    "kaip_engine_queue_duration_seconds",
)
RATIOS: Final = frozenset({"kv_cache_usage"})
"""Keys whose samples are averaged over label sets instead of summed."""


# -- the metric map --------------------------------------------------------------------------------


@dataclass
class EngineHistogram:
    """One engine histogram, its label sets summed: cumulative ``(le, count)`` and the sum."""

    buckets: dict[float, float] = field(default_factory=dict)
    sum: float = 0.0

    def cumulative(self) -> list[tuple[str, float]]:
        return [
            ("+Inf" if math.isinf(bound) else repr(bound), count)
            for bound, count in sorted(self.buckets.items())
        ]


@dataclass
class EngineSnapshot:
    """What one scrape of the engine said, in kaip's terms (module docstring)."""

    stats: dict[str, float] = field(default_factory=dict)
    """``busy``, ``waiting``, ``kv_cache_usage``, ``prompt_tokens``, ``prompt_cached_tokens``,
    ``generated_tokens``: only those the engine reported."""
    histograms: dict[str, EngineHistogram] = field(default_factory=dict)


def translate(text: str, engine: EngineProfile) -> EngineSnapshot:
    """The engine's Prometheus ``text`` read through its metric map; samples it does not map are
    left out. Raises ValueError when ``text`` is not Prometheus text."""
    snapshot = EngineSnapshot()
    ratio_counts: dict[str, int] = {}
    sources: dict[str, str] = {}  # kaip histogram -> the engine histogram it was read from
    for family in text_string_to_metric_families(text):
        # prometheus_client strips a counter's _total from the family name, not its samples'
        histogram = engine.histograms.get(family.name)
        if histogram is not None and family.type == "histogram":
            if sources.setdefault(histogram, family.name) != family.name:
                continue  # an engine that exports both an old and a new name: the first one
            target = snapshot.histograms.setdefault(histogram, EngineHistogram())
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    target.buckets[bound] = target.buckets.get(bound, 0.0) + sample.value
                elif sample.name.endswith("_sum"):
                    target.sum += sample.value
            continue
        for sample in family.samples:
            key = engine.samples.get(sample.name)
            if key is None or math.isnan(sample.value):
                continue
            snapshot.stats[key] = snapshot.stats.get(key, 0.0) + sample.value
            if key in RATIOS:
                ratio_counts[key] = ratio_counts.get(key, 0) + 1
    for key, count in ratio_counts.items():
        snapshot.stats[key] /= count
    return snapshot


__all__ = [
    "ENGINE_HISTOGRAMS",
    "PROFILES",
    "EngineProfile",
    "EngineSnapshot",
    "profile",
    "translate",
]

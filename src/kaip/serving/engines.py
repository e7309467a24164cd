"""The inference engines a Model may be served by (``serve.engine``): how each one is started,
how it says it is healthy, and how its Prometheus metrics read in kaip's names.

An engine differs from another only in what :class:`EngineProfile` holds: its command line, its
health path, its metrics path and its metric map. Everything else (starting it, waiting for it,
relaying to it) is :mod:`kaip.serving.relay`, the same for all.

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
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from prometheus_client.parser import text_string_to_metric_families

LOOPBACK: Final = "127.0.0.1"
POD_ENGINE_PORT: Final = 8001
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


class EngineProfile(Protocol):
    """What sets one engine apart from another."""

    name: str
    health_path: str
    """GET here answers 200 once the engine serves."""
    metrics_path: str | None
    """Its Prometheus text, or None when it has none."""
    image: str
    """The pinned container image on Kubernetes (``serve.engine.image`` overrides it)."""
    samples: Mapping[str, str]
    """Engine sample name -> snapshot key (see :class:`EngineSnapshot`)."""
    histograms: Mapping[str, str]
    """Engine histogram name -> kaip's name for it (one of :data:`ENGINE_HISTOGRAMS`)."""

    def command(
        self, model: str, served_name: str, port: int, args: Sequence[str], *, pod: bool
    ) -> list[str]:
        """The argv that serves ``model`` (a local path) as ``served_name`` on loopback ``port``;
        ``pod``: in the engine's own container image rather than kaip's Python environment."""
        ...


@dataclass
class _Profile:
    name: str
    health_path: str
    metrics_path: str | None
    image: str
    samples: Mapping[str, str]
    histograms: Mapping[str, str]


_VLLM_HISTOGRAMS = {
    "vllm:time_to_first_token_seconds": "kaip_engine_time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds": "kaip_engine_time_per_output_token_seconds",
    "vllm:time_per_output_token_seconds": "kaip_engine_time_per_output_token_seconds",
    "vllm:e2e_request_latency_seconds": "kaip_engine_request_duration_seconds",
    "vllm:request_queue_time_seconds": "kaip_engine_queue_duration_seconds",
}


@dataclass
class VLLM(_Profile):
    """vLLM's OpenAI server (``vllm serve``); metrics per docs/design/metrics.md of vLLM."""

    name: str = "vllm"
    health_path: str = "/health"
    metrics_path: str | None = "/metrics"
    image: str = "docker.io/vllm/vllm-openai:v0.33.0"
    samples: Mapping[str, str] = field(
        default_factory=lambda: {
            "vllm:num_requests_running": "busy",
            "vllm:num_requests_waiting": "waiting",
            "vllm:kv_cache_usage_perc": "kv_cache_usage",
            "vllm:gpu_cache_usage_perc": "kv_cache_usage",  # before v0.10
            "vllm:prompt_tokens_total": "prompt_tokens",
            "vllm:generation_tokens_total": "generated_tokens",
            "vllm:prefix_cache_hits_total": "prompt_cached_tokens",
        }
    )
    histograms: Mapping[str, str] = field(default_factory=lambda: dict(_VLLM_HISTOGRAMS))

    def command(
        self, model: str, served_name: str, port: int, args: Sequence[str], *, pod: bool
    ) -> list[str]:
        return [
            "vllm", "serve", model, "--host", LOOPBACK, "--port", str(port),
            "--served-model-name", served_name, *args,
        ]  # fmt: skip


@dataclass
class SGLang(_Profile):
    """SGLang's server (``python -m sglang.launch_server``), its metrics on."""

    name: str = "sglang"
    health_path: str = "/health"
    metrics_path: str | None = "/metrics"
    image: str = "docker.io/lmsysorg/sglang:v0.5.23"
    samples: Mapping[str, str] = field(
        default_factory=lambda: {
            "sglang:num_running_reqs": "busy",
            "sglang:num_queue_reqs": "waiting",
            "sglang:token_usage": "kv_cache_usage",
            "sglang:prompt_tokens_total": "prompt_tokens",
            "sglang:generation_tokens_total": "generated_tokens",
            "sglang:cached_tokens_total": "prompt_cached_tokens",
        }
    )
    histograms: Mapping[str, str] = field(
        default_factory=lambda: {
            "sglang:time_to_first_token_seconds": "kaip_engine_time_to_first_token_seconds",
            "sglang:inter_token_latency_seconds": "kaip_engine_time_per_output_token_seconds",
            "sglang:e2e_request_latency_seconds": "kaip_engine_request_duration_seconds",
            "sglang:queue_time_seconds": "kaip_engine_queue_duration_seconds",
        }
    )

    def command(
        self, model: str, served_name: str, port: int, args: Sequence[str], *, pod: bool
    ) -> list[str]:
        python = "python3" if pod else sys.executable
        return [
            python, "-m", "sglang.launch_server", "--model-path", model, "--host", LOOPBACK,
            "--port", str(port), "--served-model-name", served_name, "--enable-metrics", *args,
        ]  # fmt: skip


@dataclass
class LlamaServer(_Profile):
    """llama.cpp's OpenAI server. Locally: llama-cpp-python's (``python -m llama_cpp.server``,
    ``kaip[llm-server]``), which has no /metrics; in a pod: llama.cpp's own ``llama-server``
    from its image, with ``--metrics`` (the ``llamacpp:`` names below). Both answer
    ``/v1/models`` once the model is loaded."""

    name: str = "llama-server"
    health_path: str = "/v1/models"
    metrics_path: str | None = "/metrics"
    image: str = "ghcr.io/ggml-org/llama.cpp:server-b6123"
    samples: Mapping[str, str] = field(
        default_factory=lambda: {
            "llamacpp:requests_processing": "busy",
            "llamacpp:requests_deferred": "waiting",
            "llamacpp:kv_cache_usage_ratio": "kv_cache_usage",
            "llamacpp:prompt_tokens_total": "prompt_tokens",
            "llamacpp:tokens_predicted_total": "generated_tokens",
        }
    )
    histograms: Mapping[str, str] = field(default_factory=dict)

    def command(
        self, model: str, served_name: str, port: int, args: Sequence[str], *, pod: bool
    ) -> list[str]:
        if pod:
            return [
                "/app/llama-server", "--model", model, "--host", LOOPBACK, "--port", str(port),
                "--alias", served_name, "--metrics", *args,
            ]  # fmt: skip
        return [
            sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", LOOPBACK,
            "--port", str(port), "--model_alias", served_name, *args,
        ]  # fmt: skip


PROFILES: Final[Mapping[str, EngineProfile]] = {
    "vllm": VLLM(),
    "sglang": SGLang(),
    "llama-server": LlamaServer(),
}


def profile(name: str) -> EngineProfile:
    """The profile of ``serve.engine.name`` (the spec allows only these names)."""
    return PROFILES[name]


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

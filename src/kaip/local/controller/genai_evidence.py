"""The GenAI gates' evidence on ``kaip up``: each revision's p95 time to first token and per
output token during a rollout step, from its replicas' own GenAI histograms.

Why the replicas' histograms and not the gateway's clock: the replica stamps the first token as
the engine yields it, streamed or not, and counts output tokens, which a proxy cannot (a
non-streamed answer arrives whole; an SSE chunk is not a token). They are also what the operator
reads through Prometheus on a cluster (:mod:`kaip.kube.operator.metrics`), so both targets judge
a canary on the same measurement, by the same quantile rule (:mod:`kaip.policy.genai`).

:class:`GenAIWindow` keeps, per replica, the cumulative buckets last read and, per revision, what
they gained since the step began (``increase`` summed ``by (le)``, as the PromQL does). The first
read of a step only sets the baseline; a replica first seen later (a new canary replica) counts
from zero, and one whose counts fell restarted. :func:`scrape` reads ``/metrics`` of the given
replicas at once (:func:`~kaip.local.controller.replica_metrics.read_metrics`, bounded in time
and size); one that does not answer is left out of this read (its gain shows at the next).
Never decides anything: :mod:`kaip.policy` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from kaip.local.controller.replica_metrics import read_metrics
from kaip.policy.genai import Buckets, add, histogram_quantile, increase
from kaip.telemetry import GENAI_TIME_PER_OUTPUT_TOKEN, GENAI_TIME_TO_FIRST_TOKEN, prometheus_name

SCRAPE_INTERVAL_S = 1.0
"""How often a rollout with a GenAI gate reads its replicas' ``/metrics``."""
TTFT: str = prometheus_name(GENAI_TIME_TO_FIRST_TOKEN, "seconds")
TPOT: str = prometheus_name(GENAI_TIME_PER_OUTPUT_TOKEN, "seconds")


@dataclass(frozen=True)
class ReplicaHistograms:
    """One replica's cumulative GenAI buckets (every operation and outcome summed)."""

    revision: str
    ttft: Buckets
    tpot: Buckets


def parse(text: str) -> tuple[dict[float, float], dict[float, float]]:
    """The TTFT and TPOT buckets of a ``/metrics`` exposition, each summed over its label sets."""
    sums: dict[str, dict[float, float]] = {TTFT: {}, TPOT: {}}
    for family in text_string_to_metric_families(text):
        buckets = sums.get(family.name)
        if buckets is None:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                continue
            le = float(sample.labels.get("le", "nan"))
            if not math.isnan(le):
                buckets[le] = buckets.get(le, 0.0) + sample.value
    return sums[TTFT], sums[TPOT]


async def scrape(targets: Iterable[tuple[str, str, int]]) -> dict[str, ReplicaHistograms]:
    """``(replica, revision, port)`` -> what each replica's ``/metrics`` holds now."""
    targets = list(targets)
    texts = await read_metrics([port for _, _, port in targets])
    out: dict[str, ReplicaHistograms] = {}
    for (replica, revision, _), text in zip(targets, texts, strict=True):
        if text is None:
            continue
        try:
            ttft, tpot = parse(text)
        except ValueError:  # not a Prometheus exposition: left out, as a silent replica is
            continue
        out[replica] = ReplicaHistograms(revision, ttft, tpot)
    return out


@dataclass
class GenAIWindow:
    """What each revision's replicas observed since the step began (module docstring)."""

    last: dict[str, ReplicaHistograms] = field(default_factory=dict)
    ttft: dict[str, dict[float, float]] = field(default_factory=dict)
    tpot: dict[str, dict[float, float]] = field(default_factory=dict)
    primed: bool = False

    def fold(self, read: Mapping[str, ReplicaHistograms]) -> None:
        """Add what each replica gained since its last read (the first read of a step: none)."""
        for replica, now in read.items():
            before = self.last.get(replica)
            self.last[replica] = now
            if not self.primed:
                continue
            for sums, new, old in (
                (self.ttft, now.ttft, before.ttft if before else None),
                (self.tpot, now.tpot, before.tpot if before else None),
            ):
                gained = increase(new, old)
                sums[now.revision] = add([sums.get(now.revision, {}), gained])
        self.primed = True

    def new_step(self) -> None:
        """A step began: count afresh from the next read (its baseline)."""
        self.ttft, self.tpot, self.primed = {}, {}, False

    def p95_ms(self, revision: str) -> tuple[float | None, float | None]:
        """The revision's p95 time to first token and per output token this step, in ms."""
        ttft = histogram_quantile(0.95, self.ttft.get(revision, {}))
        tpot = histogram_quantile(0.95, self.tpot.get(revision, {}))
        return (
            None if ttft is None else ttft * 1000.0,
            None if tpot is None else tpot * 1000.0,
        )


__all__ = ["SCRAPE_INTERVAL_S", "GenAIWindow", "ReplicaHistograms", "parse", "scrape"]

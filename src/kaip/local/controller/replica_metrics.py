"""Reading ``kaip up``'s replicas' ``/metrics``: the one HTTP reader, and the KV-cache gauge.

:func:`read_metrics` reads the expositions of replicas on loopback ports at once, each bounded
in time (:data:`SCRAPE_TIMEOUT_S`) and size (:data:`MAX_METRICS_BYTES`); a replica that does
not answer, or answers too much, is None in its place. The GenAI gates read their histograms
through it (:mod:`~kaip.local.controller.genai_evidence`), the autoscaler the KV-cache use of a
Model with ``scaling.targetKvCacheUsage`` (:class:`KvCacheReader`: the replicas'
``kaip_kv_cache_usage_ratio`` averaged, as the HPA averages a Pods metric, read beside the loop
every :data:`KV_READ_INTERVAL_S`; a tick never waits for it). Never decides anything:
:func:`kaip.policy.autoscale` does.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kaip.telemetry import KV_CACHE_USAGE

SCRAPE_TIMEOUT_S: Final = 5.0
MAX_METRICS_BYTES: Final = 4 * 2**20
KV_READ_INTERVAL_S: Final = 2.0
"""How often the autoscaler reads a Model's replicas' KV-cache use."""


async def read_metrics(ports: Sequence[int]) -> list[str | None]:
    """The ``/metrics`` exposition of the replica on each loopback port, None where none came."""
    if not ports:
        return []
    timeout = httpx.Timeout(SCRAPE_TIMEOUT_S)
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:

        async def one(port: int) -> str | None:
            try:
                async with client.stream("GET", f"http://127.0.0.1:{port}/metrics") as answer:
                    if answer.status_code != 200:
                        return None
                    body = bytearray()
                    async for chunk in answer.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_METRICS_BYTES:
                            return None
                    return body.decode("utf-8", "replace")
            except httpx.HTTPError:
                return None

        return list(await asyncio.gather(*(one(port) for port in ports)))


def kv_cache_usage(text: str) -> float | None:
    """The replica's ``kaip_kv_cache_usage_ratio`` (its label sets averaged), None if absent or
    not a Prometheus exposition."""
    values: list[float] = []
    try:
        for family in text_string_to_metric_families(text):
            if family.name == KV_CACHE_USAGE:
                values += [s.value for s in family.samples if math.isfinite(s.value)]
    except ValueError:
        return None
    return sum(values) / len(values) if values else None


async def mean_kv_cache_usage(ports: Sequence[int]) -> float | None:
    """The KV-cache use of the replicas on ``ports`` that report it, averaged."""
    readings = [kv_cache_usage(text) for text in await read_metrics(ports) if text is not None]
    values = [value for value in readings if value is not None]
    return sum(values) / len(values) if values else None


@dataclass
class KvCacheReader:
    """One resource's KV-cache use: the latest mean read, and the read in flight."""

    usage: float | None = None
    task: asyncio.Task[float | None] | None = None
    read_at: float | None = None

    def poll(self, ports: Sequence[int], now: float, done: Callable[[], None]) -> float | None:
        """The latest mean (None before the first read, or with no replica reporting it);
        starts the next read when one is due. ``done`` is called when a read ends."""
        task = self.task
        if task is not None and task.done():
            self.task = None
            if not task.cancelled() and task.exception() is None:
                self.usage = task.result()
        if not ports:
            self.usage = None
        elif self.task is None and (
            self.read_at is None or now - self.read_at >= KV_READ_INTERVAL_S
        ):
            self.read_at = now
            self.task = asyncio.get_running_loop().create_task(self._read(list(ports), done))
        return self.usage

    @staticmethod
    async def _read(ports: list[int], done: Callable[[], None]) -> float | None:
        try:
            return await mean_kv_cache_usage(ports)
        finally:
            done()

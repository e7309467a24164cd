"""Traffic numbers for the portal on a cluster, from Prometheus: the catalog's and the charts'.

The replicas' own metrics (``kaip_requests_total`` and ``kaip_request_duration_seconds``, with
``model`` and ``revision`` labels; Prometheus adds ``namespace`` as the chart's PodMonitor or
any Kubernetes scrape config does) give, per Model: requests so far, req/s and the error share
over the last :data:`WINDOW`, and the p99 latency over it (``histogram_quantile``, seconds); and
for a resource page one point per :data:`STEP_S` over the last hour (``query_range``). One
instant query per figure answers every Model at once (``sum by (namespace, model)``), and the
answer is kept :data:`TTL_S` so a busy catalog asks Prometheus at most that often. Requests go
through :class:`httpx.AsyncClient` with a timeout; a Prometheus that does not answer leaves the
numbers out (the pages say so), never an error page. Reads only.

The catalog's cost per 1,000 requests and energy per request are those of the last
:data:`COST_WINDOW_S`, worked out exactly as ``kaip cost --prometheus`` does: the replicas'
windows from :func:`kaip.kube.operator.costs.cluster_windows` (its PromQL, asked here without
blocking the event loop), priced and powered by :mod:`kaip.accounting` with the same defaults and
overrides (``KAIP_COST_*``, ``KAIP_COST_PRICES_FILE``, which the chart sets from ``cost.prices``),
usage basis. They are kept :data:`COST_TTL_S`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Final

import httpx

from kaip.accounting import Coefficients, Figures, PriceBook, attribute
from kaip.errors import MetricsError
from kaip.kube.operator.costs import cluster_windows
from kaip.kube.operator.costs import queries as cost_queries
from kaip.local.controller.costs import coefficients_from, price_book_from
from kaip.portal.traffic import cost_columns
from kaip.telemetry import REQUEST_DURATION, REQUESTS_TOTAL

log = logging.getLogger(__name__)

WINDOW: Final = "5m"
STEP_S: Final = 60
HOUR_S: Final = 3600
TTL_S: Final = 5.0
TIMEOUT_S: Final = 5.0
BY: Final = "namespace, model"
COST_WINDOW_S: Final = 3600.0
COST_TTL_S: Final = 15.0
MAX_COST_NAMESPACES: Final = 20
"""Namespaces whose costs one catalog read works out (each is its own set of queries)."""

Key = tuple[str, str]
"""(namespace, Model name)."""


def _where(namespace: str | None, name: str | None = None) -> str:
    labels = [] if namespace is None else [f'namespace="{_quote(namespace)}"']
    if name is not None:
        labels.append(f'model="{_quote(name)}"')
    return "{" + ",".join(labels) + "}"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def catalog_queries(namespace: str | None) -> dict[str, str]:
    """PromQL for every Model's figures at once, by namespace and model."""
    every = _where(namespace)
    errors = every[:-1] + ("," if every != "{}" else "") + 'status=~"5.."}'
    return {
        "requests": f"sum by ({BY}) ({REQUESTS_TOTAL}{every})",
        "rate": f"sum by ({BY}) (rate({REQUESTS_TOTAL}{every}[{WINDOW}]))",
        "errors": f"sum by ({BY}) (rate({REQUESTS_TOTAL}{errors}[{WINDOW}]))",
        "p99": (
            f"histogram_quantile(0.99, sum by ({BY}, le) "
            f"(rate({REQUEST_DURATION}_bucket{every}[{WINDOW}])))"
        ),
    }


def series_queries(namespace: str, name: str) -> dict[str, str]:
    """PromQL for one Model's chart lines."""
    every = _where(namespace, name)
    errors = every[:-1] + ',status=~"5.."}'
    rate = f"sum(rate({REQUESTS_TOTAL}{every}[{WINDOW}]))"
    return {
        "rate": rate,
        "errors": f"100 * sum(rate({REQUESTS_TOTAL}{errors}[{WINDOW}])) / {rate}",
        "p99": (
            "histogram_quantile(0.99, sum by (le) "
            f"(rate({REQUEST_DURATION}_bucket{every}[{WINDOW}])))"
        ),
    }


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


class PrometheusTraffic:
    """The portal's traffic figures from the Prometheus HTTP API at ``url``."""

    def __init__(
        self,
        url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``environ`` (default: the process's) holds the cost settings; bad ones raise a
        ConfigError here, at start."""
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.url, timeout=TIMEOUT_S, transport=transport, trust_env=False
        )
        self._clock = clock
        self._kept: tuple[float, str | None, dict[Key, dict[str, Any]]] | None = None
        env = os.environ if environ is None else environ
        self._coefficients: Coefficients = coefficients_from(env, "")
        self._prices: PriceBook = price_book_from(env, self._coefficients.prices)
        self._costs: dict[str, tuple[float, float, dict[str, Figures]]] = {}
        """Namespace: (when kept, the window's end asked of Prometheus, figures by Model)."""

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str, params: Mapping[str, str]) -> list[Any] | None:
        """The result list of a query, or None (logged) when Prometheus did not answer one."""
        data = await self._data(path, params)
        if data is None:
            return None
        result = data.get("result")
        return result if isinstance(result, list) else None

    async def _data(self, path: str, params: Mapping[str, str]) -> dict[str, Any] | None:
        """The ``data`` of a query's answer, or None (logged) when Prometheus did not answer."""
        try:
            answer = await self._client.get(path, params=params)
            data = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("Prometheus at %s did not answer %s: %s", self.url, path, exc)
            return None
        if (
            answer.status_code != 200
            or not isinstance(data, dict)
            or data.get("status") != "success"
        ):
            log.warning("Prometheus at %s refused %s: %s", self.url, params, str(data)[:200])
            return None
        inner = data.get("data")
        return inner if isinstance(inner, dict) else None

    async def _namespace_costs(self, namespace: str) -> tuple[float, dict[str, Figures]] | None:
        """What each Model's requests in ``namespace`` cost over the :data:`COST_WINDOW_S` before
        an instant (usage basis): that instant and the figures by Model name; None when
        Prometheus did not answer."""
        now = self._clock()
        kept = self._costs.get(namespace)
        if kept is not None and now - kept[0] < COST_TTL_S:
            return kept[1], kept[2]
        at = time.time()
        answers: dict[str, Mapping[str, Any]] = {}
        for promql in cost_queries(COST_WINDOW_S, namespace).values():
            data = await self._data("/api/v1/query", {"query": promql, "time": f"{at:.3f}"})
            if data is None:
                return None
            answers[promql] = data
        try:
            seen = cluster_windows(lambda promql, _: answers[promql], COST_WINDOW_S, at, namespace)
        except MetricsError as exc:
            log.warning("cost figures of namespace %s left out: %s", namespace, exc)
            return None
        out: dict[str, Figures] = {}
        for window in seen.windows:
            coefficients = replace(
                self._coefficients, prices=self._prices.resolve(window.owner, None)
            )
            spent = attribute(window, coefficients, "usage").requests
            out[window.resource] = out.get(window.resource, Figures()) + spent
        self._costs[namespace] = (now, at, out)
        return at, out

    async def catalog(self, namespace: str | None) -> dict[Key, dict[str, Any]] | None:
        """Every Model's ``requests``, ``rate``, ``error_pct`` and ``p99_le_s`` (a quantile
        here, not a bucket bound); None when Prometheus did not answer."""
        now = self._clock()
        kept = self._kept
        if kept is not None and kept[1] == namespace and now - kept[0] < TTL_S:
            return kept[2]
        figures: dict[str, dict[Key, float | None]] = {}
        for figure, promql in catalog_queries(namespace).items():
            result = await self._get("/api/v1/query", {"query": promql})
            if result is None:
                return None
            figures[figure] = {
                (str(r["metric"].get("namespace", "")), str(r["metric"].get("model", ""))): (
                    _number(r["value"][1])
                )
                for r in result
                if isinstance(r, dict) and isinstance(r.get("metric"), dict)
            }
        out: dict[Key, dict[str, Any]] = {}
        for key, requests in figures["requests"].items():
            rate = figures["rate"].get(key)
            errors = figures["errors"].get(key) or 0.0
            out[key] = {
                "requests": None if requests is None else int(requests),
                "rate": rate,
                "error_pct": 100.0 * errors / rate if rate else None,
                "p99_le_s": figures["p99"].get(key),
                **cost_columns(None),
            }
        namespaces = sorted({ns for ns, _ in out})
        for ns in namespaces[:MAX_COST_NAMESPACES]:
            costs = await self._namespace_costs(ns)
            if costs is None:
                continue
            until, by_name = costs
            for (row_ns, name), row in out.items():
                if row_ns == ns:
                    row.update(cost_columns(by_name.get(name), until))
        self._kept = (now, namespace, out)
        return out

    async def series(
        self, namespace: str, name: str, end: float | None = None
    ) -> list[dict[str, Any]] | None:
        """One point per :data:`STEP_S` over the last hour (``at``, ``rate``, ``error_pct``,
        ``p99_le_s``), oldest first; None when Prometheus did not answer."""
        stop = time.time() if end is None else end
        lines: dict[str, dict[float, float | None]] = {}
        for figure, promql in series_queries(namespace, name).items():
            params = {
                "query": promql,
                "start": f"{stop - HOUR_S:.3f}",
                "end": f"{stop:.3f}",
                "step": str(STEP_S),
            }
            result = await self._get("/api/v1/query_range", params)
            if result is None:
                return None
            values = result[0].get("values", []) if result and isinstance(result[0], dict) else []
            lines[figure] = {float(at): _number(v) for at, v in values}
        moments = sorted(lines["rate"])
        return [
            {
                "at": at,
                "rate": lines["rate"][at] or 0.0,
                "error_pct": lines["errors"].get(at),
                "p99_le_s": lines["p99"].get(at),
            }
            for at in moments
        ]

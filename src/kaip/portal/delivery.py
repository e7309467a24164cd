"""The portal's delivery metrics: a source's deployment events fed to :mod:`kaip.dora`.

:func:`history` reads the deployment events of ``.kaip/state.db`` (at most
:data:`~kaip.local.state.HISTORY_LIMIT` of them, the latest before the window's end) for the
local source; :func:`metrics` computes the five numbers from any source's events and owners,
and :func:`as_json` turns the pure :class:`~kaip.dora.Metrics` into the JSON of
``GET /api/v1/dora`` (snake_case, times in epoch seconds, durations in seconds, every number
with the ids of the deployments behind it).
Validates the query (window of 1 to :data:`MAX_DAYS` days, names of at most 253 characters) and
never writes anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from kaip.dora import BANDS_2024, DAY_S, Event, Metrics, Summary, delivery_metrics
from kaip.local.controller.admin import BadRequestError
from kaip.local.state import State

if TYPE_CHECKING:
    from kaip.portal.source import Deployments

API_VERSION = "v1"
DEFAULT_DAYS = 30
MAX_DAYS = 366
MAX_LISTED = 500
"""The most deployments one answer lists (the latest first); the numbers cover all of them."""


def history(state: State, until: float) -> list[Event]:
    """The event log before ``until`` as :class:`kaip.dora.Event`\\ s."""
    return [
        Event(
            id=event_id,
            at=e.at,
            kind=e.kind,
            name=e.name,
            action=e.action,
            outcome=e.outcome,
            revision=e.revision,
            committed_at=e.committed_at,
            artifact_registered_at=e.artifact_registered_at,
        )
        for event_id, e in state.history(until)
    ]


def window(query: Mapping[str, str], now: float) -> tuple[float, float]:
    """``?days=N&until=EPOCH``: the window [until - N days, until); until defaults to now."""
    days_text = query.get("days", str(DEFAULT_DAYS))
    if not days_text.isdigit() or not 1 <= int(days_text) <= MAX_DAYS:
        raise BadRequestError(
            f"days={days_text[:20]!r}: give a whole number of days from 1 to {MAX_DAYS}"
        )
    until = now
    if "until" in query:
        try:
            until = float(query["until"])
        except ValueError:
            until = math.nan
        if not 0 < until <= 1e11:
            raise BadRequestError(
                f"until={query['until'][:20]!r}: give the window's end in seconds since the epoch"
            )
    return until - int(days_text) * DAY_S, until


def name_filter(query: Mapping[str, str], field: str) -> str | None:
    value = query.get(field)
    if value is None or value == "":
        return None
    if len(value) > 253:
        raise BadRequestError(f"{field}: at most 253 characters")
    return value


def metrics(
    known: Deployments,
    since: float,
    until: float,
    *,
    owner: str | None,
    resource: str | None,
) -> Metrics:
    """The five numbers of [since, until) from what a portal source knows."""
    return delivery_metrics(
        known.events, since=since, until=until, owners=known.owners, owner=owner, resource=resource
    )


def _summary(summary: Summary) -> dict[str, Any]:
    return {
        "count": summary.count,
        "median_s": summary.median_s,
        "p90_s": summary.p90_s,
        "deployments": list(summary.deployments),
    }


def as_json(metrics: Metrics, *, owner: str | None, resource: str | None) -> dict[str, Any]:
    """The API's answer: the five numbers, their 2024 context and the deployments behind them."""
    listed = sorted(metrics.listed, key=lambda d: (d.started_at, d.id), reverse=True)
    return {
        "api_version": API_VERSION,
        "window": {"since": metrics.since, "until": metrics.until, "days": metrics.days},
        "filter": {"owner": owner, "resource": resource},
        "deployment_frequency": {
            "deployments": metrics.deployments,
            "resources": metrics.resources,
            "per_day": metrics.per_day,
            "band": metrics.frequency_band,
            "bands_2024": BANDS_2024["deployment_frequency"],
            "weekends_excluded": False,
        },
        "lead_time": {
            "commit": _summary(metrics.lead_time_commit),
            "artifact": _summary(metrics.lead_time_artifact),
            "band": metrics.lead_time_band,
            "bands_2024": BANDS_2024["lead_time"],
        },
        "change_fail_rate": {
            "rate": metrics.change_fail_rate,
            "decided": metrics.decided,
            "failed": list(metrics.failed),
            "caught_by_canary": list(metrics.caught_by_canary),
            "user_impacting": list(metrics.user_impacting),
            "bands_2024": BANDS_2024["change_fail_rate"],
        },
        "recovery_time": {
            **_summary(metrics.recovery),
            "band": metrics.recovery_band,
            "bands_2024": BANDS_2024["recovery"],
        },
        "rework_rate": {
            "rate": metrics.rework_rate,
            "deployments": list(metrics.rework),
            "bands_2024": BANDS_2024["rework_rate"],
        },
        "refused_by_quality_gate": metrics.refused,
        "deployments": [asdict(d) for d in listed[:MAX_LISTED]],
        "deployments_listed": min(len(listed), MAX_LISTED),
    }

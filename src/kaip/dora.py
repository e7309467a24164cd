"""DORA delivery metrics of model deployments, computed from the deployment event log (pure).

Owns the kaip definitions of the five DORA numbers (the project's portal notes, PORTAL.md §C4)
and the 2024 cluster values shown beside them as context (§C2). Never reads a clock, a file or a
database: :func:`delivery_metrics` takes the events and the window as arguments, so both
targets and the tests feed it alike. Never ranks teams: a number comes with the 2024 values of
every cluster, and the cluster whose range holds it where the report gives ranges.

The rules, event by event (actions and outcomes as the controller records them):

* **Deployment**: a revision starts serving traffic. ``create``/``created`` (a resource's first
  revision, at 100 % at once) and ``deploy``/``started`` (a rollout: the canary's first step,
  or a replace) are deployments; promotion is not a second one; a version the quality gate
  ``refused`` never served and is counted apart. A deployment belongs to the window its start
  falls in ([since, until)); only events before ``until`` are known.
* **Reaching 100 %**: ``created`` at once, or the ``rollout`` event ``promoted`` of its revision.
* **Failed deployment, caught by the canary**: its rollout ended ``rolled_back`` (a gate,
  a crash loop, the progress deadline) or ``aborted`` (a person intervened) before 100 %.
* **Failed deployment, user-impacting**: it reached 100 % and the next deployment of the same
  resource was a *rollback deployment*: one whose revision had had 100 % before (``kaip rollout
  undo``). kaip records no incidents yet, so a hotfix that is a new revision is not recognised.
* **Change fail rate**: failed deployments / decided deployments (those that reached 100 % or
  ended; a canary still running is not decided yet), split into the two kinds above.
* **Rework rate**: rollback deployments / deployments.
* **Lead time**, two clocks, over deployments that reached 100 % and are not rollback
  deployments (those ship no new change): ``commit → 100 %`` (the spec's git commit time, when
  the deploy came from a git repository) and ``artifact → 100 %`` (when the registered model
  version was registered). Durations <= 0 are ignored (as Four Keys does).
* **Recovery time**, over user-impacting failures: from the intervention (the rollback
  deployment's start: with no incident events that is when the failure is known to be acted
  on) to the next time a revision of that resource has 100 % again. A canary's failure is
  recovered when it is detected (the rollback puts 100 % back on the stable revision at that
  moment), so those are not averaged in.
* **Deployment frequency**: deployments / window days; weekends are not excluded.
* Medians are :func:`statistics.median` (the mean of the two middle values for an even count);
  p90 is the nearest rank (the ceil(0.9 n)-th smallest).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

DAY_S = 86400.0
Failure = Literal["", "caught_by_canary", "user_impacting"]
Ending = Literal["full", "rolled_back", "aborted", "superseded", "running"]


@dataclass(frozen=True)
class Event:
    """One deployment event, as much of it as the metrics need."""

    id: int
    at: float
    kind: str
    name: str
    action: str
    outcome: str
    revision: str | None
    committed_at: float | None = None
    artifact_registered_at: float | None = None


@dataclass(frozen=True)
class Deployment:
    """A revision that started serving, and what became of it (all times epoch seconds)."""

    id: int
    """The id of the event that started it."""
    kind: str
    name: str
    owner: str
    revision: str
    started_at: float
    ending: Ending
    full_at: float | None
    """When it had 100 % of the traffic (None: never, or not yet)."""
    ended_at: float | None
    rework: bool
    """A rollback deployment: its revision had had 100 % before."""
    failure: Failure = ""
    lead_commit_s: float | None = None
    lead_artifact_s: float | None = None
    recovery_s: float | None = None
    event_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Summary:
    """Median and p90 of some durations (seconds) and the deployments they come from."""

    count: int
    median_s: float | None
    p90_s: float | None
    deployments: tuple[int, ...]


@dataclass(frozen=True)
class Metrics:
    """The five numbers over one window, each with the deployments behind it."""

    since: float
    until: float
    days: float
    deployments: int
    resources: int
    per_day: float
    frequency_band: str
    decided: int
    failed: tuple[int, ...]
    caught_by_canary: tuple[int, ...]
    user_impacting: tuple[int, ...]
    change_fail_rate: float | None
    rework: tuple[int, ...]
    rework_rate: float | None
    lead_time_commit: Summary
    lead_time_artifact: Summary
    lead_time_band: str
    recovery: Summary
    recovery_band: str
    refused: int
    listed: tuple[Deployment, ...] = field(default=())


BANDS_2024: Mapping[str, str] = {
    "deployment_frequency": "elite: on demand · high: daily to weekly · medium: weekly to "
    "monthly · low: monthly to every 6 months",
    "lead_time": "elite: < 1 day · high: 1 day to 1 week · medium: 1 week to 1 month · "
    "low: 1 to 6 months",
    "change_fail_rate": "elite: 5 % · high: 20 % · medium: 10 % · low: 40 %",
    "recovery": "elite: < 1 hour · high: < 1 day · medium: < 1 day · low: 1 week to 1 month",
    "rework_rate": "no cluster values published (the metric is new in 2024)",
}
"""The 2024 DORA report's cluster values (PORTAL.md §C2): context, never a ranking."""


def frequency_band(per_day: float) -> str:
    """The 2024 cluster whose deployment frequency range holds ``per_day``."""
    if per_day >= 1.0:
        return "elite (on demand)"
    if per_day >= 1 / 7:
        return "high (daily to weekly)"
    if per_day >= 1 / 30:
        return "medium (weekly to monthly)"
    return "low (monthly or less)"


def lead_time_band(seconds: float | None) -> str:
    if seconds is None:
        return "no data"
    for limit, name in ((DAY_S, "elite (< 1 day)"), (7 * DAY_S, "high (1 day to 1 week)")):
        if seconds < limit:
            return name
    return "medium (1 week to 1 month)" if seconds < 30 * DAY_S else "low (1 month or more)"


def recovery_band(seconds: float | None) -> str:
    if seconds is None:
        return "no data"
    if seconds < 3600:
        return "elite (< 1 hour)"
    if seconds < DAY_S:
        return "high or medium (< 1 day)"
    return "low (1 day or more)"


def summarise(pairs: Iterable[tuple[int, float]]) -> Summary:
    """Median and nearest-rank p90 of the positive durations in ``(deployment, seconds)``."""
    kept = sorted((s, d) for d, s in pairs if s > 0)
    if not kept:
        return Summary(0, None, None, ())
    values = [s for s, _ in kept]
    p90 = values[math.ceil(0.9 * len(values)) - 1]
    return Summary(len(values), statistics.median(values), p90, tuple(sorted(d for _, d in kept)))


def deployments(events: Sequence[Event], owners: Mapping[str, str]) -> list[Deployment]:
    """Every deployment in ``events`` (any order; ids break ties in time) and its fate."""
    ordered = sorted(events, key=lambda e: (e.at, e.id))
    out: list[Deployment] = []
    start_events: dict[int, Event] = {}
    open_by_resource: dict[tuple[str, str], int] = {}
    served: dict[tuple[str, str], set[str]] = {}
    for event in ordered:
        key = (event.kind, event.name)
        starts = (event.action, event.outcome) in {("create", "created"), ("deploy", "started")}
        if starts and event.revision is not None:
            rework = event.revision in served.get(key, set())
            full = event.outcome == "created"
            out.append(
                Deployment(
                    id=event.id, kind=event.kind, name=event.name,
                    owner=owners.get(event.name, ""), revision=event.revision,
                    started_at=event.at, ending="full" if full else "running",
                    full_at=event.at if full else None, ended_at=event.at if full else None,
                    rework=rework, event_ids=(event.id,),
                    lead_commit_s=_lead(event.at, event.committed_at) if full else None,
                    lead_artifact_s=_lead(event.at, event.artifact_registered_at) if full else None,
                )
            )  # fmt: skip
            if full:
                served.setdefault(key, set()).add(event.revision)
            else:
                open_by_resource[key] = len(out) - 1
                start_events[event.id] = event
            continue
        if event.action != "rollout" or event.outcome not in _ENDINGS:
            continue
        if key not in open_by_resource:
            continue
        index = open_by_resource[key]
        started = out[index]
        if started.revision != event.revision:
            continue
        del open_by_resource[key]
        ending = _ENDINGS[event.outcome]
        full = ending == "full"
        if full:
            served.setdefault(key, set()).add(started.revision)
        start = start_events.pop(started.id)
        out[index] = replace(
            started,
            ending=ending,
            ended_at=event.at,
            full_at=event.at if full else None,
            failure="caught_by_canary" if ending in ("rolled_back", "aborted") else "",
            event_ids=(*started.event_ids, event.id),
            lead_commit_s=_lead(event.at, start.committed_at) if full else None,
            lead_artifact_s=_lead(event.at, start.artifact_registered_at) if full else None,
        )
    return _mark_user_impacting(out)


def _mark_user_impacting(out: list[Deployment]) -> list[Deployment]:
    """A rollback deployment marks the one at 100 % before it as failed, with its recovery."""
    result = list(out)
    by_resource: dict[tuple[str, str], list[int]] = {}
    for i, deployment in enumerate(result):
        by_resource.setdefault((deployment.kind, deployment.name), []).append(i)
    for indexes in by_resource.values():
        for position, i in enumerate(indexes):
            rollback = result[i]
            if not rollback.rework:
                continue
            before = [j for j in indexes[:position] if result[j].full_at is not None]
            if not before:
                continue
            bad = before[-1]
            restored = next(
                (result[j].full_at for j in indexes[position:] if result[j].full_at is not None),
                None,
            )
            recovery = None if restored is None else restored - rollback.started_at
            result[bad] = replace(result[bad], failure="user_impacting", recovery_s=recovery)
    return result


def delivery_metrics(
    events: Sequence[Event],
    *,
    since: float,
    until: float,
    owners: Mapping[str, str] | None = None,
    owner: str | None = None,
    resource: str | None = None,
) -> Metrics:
    """The five numbers for deployments started in [since, until), of one owner or resource."""
    if until <= since:
        raise ValueError("the window must end after it starts")
    owners = owners or {}
    known = [e for e in events if e.at < until]
    chosen = [
        d
        for d in deployments(known, owners)
        if since <= d.started_at < until
        and (owner is None or d.owner == owner)
        and (resource is None or d.name == resource)
    ]
    refused = sum(
        1
        for e in known
        if since <= e.at
        and e.action == "deploy"
        and e.outcome == "refused"
        and (owner is None or owners.get(e.name, "") == owner)
        and (resource is None or e.name == resource)
    )
    days = (until - since) / DAY_S
    decided = [d for d in chosen if d.ending != "running"]
    failed = [d for d in chosen if d.failure]
    changes = [d for d in chosen if not d.rework]
    lead_commit = summarise((d.id, d.lead_commit_s) for d in changes if d.lead_commit_s is not None)
    lead_artifact = summarise(
        (d.id, d.lead_artifact_s) for d in changes if d.lead_artifact_s is not None
    )
    recovery = summarise(
        (d.id, d.recovery_s)
        for d in chosen
        if d.failure == "user_impacting" and d.recovery_s is not None
    )
    per_day = len(chosen) / days
    return Metrics(
        since=since,
        until=until,
        days=days,
        deployments=len(chosen),
        resources=len({(d.kind, d.name) for d in chosen}),
        per_day=per_day,
        frequency_band=frequency_band(per_day),
        decided=len(decided),
        failed=tuple(d.id for d in failed),
        caught_by_canary=tuple(d.id for d in failed if d.failure == "caught_by_canary"),
        user_impacting=tuple(d.id for d in failed if d.failure == "user_impacting"),
        change_fail_rate=len(failed) / len(decided) if decided else None,
        rework=tuple(d.id for d in chosen if d.rework),
        rework_rate=sum(d.rework for d in chosen) / len(chosen) if chosen else None,
        lead_time_commit=lead_commit,
        lead_time_artifact=lead_artifact,
        lead_time_band=lead_time_band(lead_commit.median_s),
        recovery=recovery,
        recovery_band=recovery_band(recovery.median_s),
        refused=refused,
        listed=tuple(chosen),
    )


def _lead(full_at: float, since: float | None) -> float | None:
    return None if since is None else full_at - since


_ENDINGS: Mapping[str, Ending] = {
    "promoted": "full",
    "rolled_back": "rolled_back",
    "aborted": "aborted",
    "superseded": "superseded",
}

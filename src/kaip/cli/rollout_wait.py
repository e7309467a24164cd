"""Following rollouts to their end, and the exit code each outcome means (for CI to gate on).

``kaip deploy --wait`` and ``kaip rollout status --watch`` end here: :func:`wait` polls the admin
API (through a ``fetch`` callable, so the target is not this module's business) until every
rollout it follows has ended, prints each change and the final verdict with its evidence, and
raises the error of the worst outcome:

==============  =====  ==========================================================
outcome         exit   meaning
==============  =====  ==========================================================
promoted        0      the new revision takes 100 % of the traffic
rolled_back     4      a gate or check failed: the stable revision keeps all traffic
aborted         5      someone aborted it, it ran out of time, or a newer deploy
superseded                replaced it: the new revision did not reach 100 %
(still running) 6      ``--timeout`` passed first (the rollout goes on)
==============  =====  ==========================================================

A first deploy (no rollout: nothing to replace) is waited for until it is ready.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kaip.errors import (
    ConfigError,
    KaipError,
    RolloutAbortedError,
    RolloutFailedError,
    RolloutTimeoutError,
)

Fetch = Callable[[str], dict[str, Any]]
"""GET the rollout answer of one resource: ``{"resource": {...}, "history": [...]}``."""

POLL_SECONDS = 0.5
DEFAULT_TIMEOUT = "10m"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)?$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600.0


def parse_timeout(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1.5h`` -> seconds; anything else is a ConfigError.

    >>> parse_timeout("10m"), parse_timeout("90")
    (600.0, 90.0)
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(
            f"--timeout: {text!r} is not a duration: write a positive number of seconds or "
            "minutes or hours, e.g. 90s, 10m or 1h"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds > MAX_TIMEOUT_SECONDS:
        raise ConfigError(f"--timeout: {text!r} is longer than 7 days; pick a shorter one")
    return seconds


@dataclass(frozen=True)
class Target:
    """One resource to follow: its rollout (by record id), or, with None, its readiness."""

    kind: str
    name: str
    rollout_id: int | None


def target_of(answer: dict[str, Any], name: str) -> Target:
    """What ``rollout status --watch`` follows: the running rollout, else the latest one.

    Judging the latest finished rollout when none runs means a watch started after a quick
    rollback still fails, as CI needs.
    """
    resource = answer.get("resource") or {}
    kind = str(resource.get("kind", "resource"))
    current = resource.get("rollout")
    if current:
        return Target(kind, name, int(current["id"]))
    history = answer.get("history") or []
    if history:
        return Target(kind, name, int(history[0]["id"]))
    return Target(kind, name, None)


def outcome_error(target: Target, record: dict[str, Any]) -> KaipError | None:
    """The error a finished rollout record means (None: promoted)."""
    status = record["status"]
    head = (
        f"{target.kind} {target.name}: rollout {record['from_revision']} -> "
        f"{record['to_revision']} {str(status).replace('_', ' ')}"
    )
    reason = f": {record['reason']}" if record.get("reason") else ""
    if status == "promoted":
        return None
    if status == "rolled_back":
        return RolloutFailedError(f"{head}{reason}")
    return RolloutAbortedError(f"{head}{reason}")


def evidence_lines(record: dict[str, Any]) -> list[str]:
    """One line per verdict of a rollout: step, weight, action, reason and the numbers."""
    lines = []
    for verdict in record.get("verdicts", []):
        lines.append(
            f"  step {verdict['step_index'] + 1} at {verdict['weight']}%: {verdict['action']}: "
            f"{verdict['reason']} (canary {verdict['canary_requests']} requests, "
            f"{verdict['canary_errors']} errors; stable {verdict['stable_requests']} requests, "
            f"{verdict['stable_errors']} errors)"
        )
    return lines


def progress_line(answer: dict[str, Any], *, prefix: str | None = None) -> str:
    """Where a running rollout stands now, in one line ('' when none runs).

    The line opens with ``prefix``; by default ``"KIND NAME: "`` (what ``--wait`` prints for
    several resources at once); ``kaip rollout status`` passes its own indent.
    """
    resource = answer.get("resource") or {}
    current = resource.get("rollout")
    if not current:
        return ""
    if prefix is None:
        prefix = f"{resource.get('kind')} {resource.get('name')}: "
    verdict = current.get("verdict") or {}
    return (
        f"{prefix}step {current['step']}/{len(current['steps'])} weights {resource['weights']}: "
        f"{verdict.get('action', 'waiting')}: {verdict.get('reason', 'canary starting')}"
    )


def _news_key(line: str) -> str:
    """The progress line without its ticking counters: a change here is news."""
    return re.sub(r"\d+s of|\d+ of minRequests|\d+ requests|\d+(\.\d+)?% errors", "", line)


def wait(
    targets: Sequence[Target],
    fetch: Fetch,
    say: Callable[[str], None],
    *,
    timeout_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Follow ``targets`` until each has ended; raise the worst outcome's error, if any.

    Prints (through ``say``) every change of a running rollout, then each final verdict with
    its evidence. The outcome decides, not this process: a rollout that ended before the first
    poll is judged the same as one watched to its end.
    """
    deadline = clock() + timeout_seconds
    pending = list(targets)
    errors: list[KaipError] = []
    last: dict[str, str] = {}
    while True:
        still: list[Target] = []
        for target in pending:
            answer = fetch(target.name)
            if target.rollout_id is None:
                resource = answer.get("resource") or {}
                if resource.get("ready"):
                    say(f"{target.kind} {target.name}: ready at revision {resource.get('stable')}")
                else:
                    still.append(target)
                continue
            record = next(
                (h for h in answer.get("history", []) if h.get("id") == target.rollout_id), None
            )
            if record is None:
                errors.append(
                    RolloutAbortedError(
                        f"{target.kind} {target.name}: rollout #{target.rollout_id} is no longer "
                        "in the recent history: newer deploys replaced it"
                    )
                )
                continue
            if record["status"] == "running":
                line = progress_line(answer)
                if line and _news_key(line) != last.get(target.name):
                    say(line)
                    last[target.name] = _news_key(line)
                still.append(target)
                continue
            error = outcome_error(target, record)
            say(
                f"{target.kind} {target.name}: rollout #{record['id']} {record['from_revision']} "
                f"-> {record['to_revision']}: {str(record['status']).replace('_', ' ')}"
                + (f" ({record['reason']})" if record.get("reason") else "")
            )
            for line in evidence_lines(record):
                say(line)
            if error is not None:
                errors.append(error)
        pending = still
        if not pending:
            break
        if clock() >= deadline:
            names = ", ".join(f"{t.kind} {t.name}" for t in pending)
            errors.append(
                RolloutTimeoutError(
                    f"{names}: still rolling out (or not ready) after --timeout "
                    f"{timeout_seconds:g}s; it goes on: follow it with "
                    "`kaip rollout status NAME --watch`"
                )
            )
            break
        sleep(POLL_SECONDS)
    if errors:
        worst = max(errors, key=lambda e: e.exit_code)
        raise type(worst)("\n".join(e.message for e in errors))


__all__ = [
    "DEFAULT_TIMEOUT",
    "Fetch",
    "Target",
    "evidence_lines",
    "outcome_error",
    "parse_timeout",
    "progress_line",
    "target_of",
    "wait",
]

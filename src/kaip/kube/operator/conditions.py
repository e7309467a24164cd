"""Kubernetes-style status conditions: ``Ready``, ``Progressing`` and ``Degraded``.

A condition follows the API conventions (``metav1.Condition``): ``type``, ``status`` (``"True"``,
``"False"`` or ``"Unknown"``), ``observedGeneration``, ``lastTransitionTime`` (RFC 3339, changed
only when ``status`` changes), a CamelCase ``reason`` and a human ``message``. This is what
``kubectl wait --for=condition=Ready`` and the Argo CD health check in ``charts/kaip`` read.

Pure: the caller passes the clock's reading; nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

READY: Final = "Ready"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"
CONDITION_TYPES: Final = (READY, PROGRESSING, DEGRADED)

Status = Literal["True", "False", "Unknown"]
_REASON = re.compile(r"^[A-Z][A-Za-z0-9]*$")
MAX_MESSAGE: Final = 32768  # metav1.Condition's limit


@dataclass(frozen=True)
class Condition:
    """What one condition should say now; :func:`merge` adds the times."""

    type: str
    status: Status
    reason: str
    message: str = ""

    def __post_init__(self) -> None:
        if not _REASON.match(self.reason):
            raise ValueError(f"condition reason {self.reason!r} is not CamelCase")


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC to the second, as Kubernetes writes times (``2026-01-02T03:04:05Z``)."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(
    existing: Sequence[Mapping[str, Any]] | None,
    desired: Sequence[Condition],
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """The conditions to write: ``desired``, keeping each one's ``lastTransitionTime`` unless its
    status changed. Conditions of other types in ``existing`` are kept as they were, after ours.
    """
    before = {str(c.get("type")): c for c in existing or () if isinstance(c, Mapping)}
    stamp = rfc3339(now)
    merged: list[dict[str, Any]] = []
    for condition in desired:
        old = before.pop(condition.type, None)
        unchanged = old is not None and old.get("status") == condition.status
        since = str(old.get("lastTransitionTime")) if old is not None and unchanged else stamp
        merged.append(
            {
                "type": condition.type,
                "status": condition.status,
                "observedGeneration": generation,
                "lastTransitionTime": since,
                "reason": condition.reason,
                "message": condition.message[:MAX_MESSAGE],
            }
        )
    merged.extend(dict(c) for c in before.values())
    return merged


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for condition in conditions or ():
        if condition.get("type") == type_:
            return condition
    return None

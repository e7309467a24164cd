"""The operator's rollout decisions as notifications (``spec.rollout.notifications``).

:func:`rollout_event` turns a :class:`~kaip.kube.operator.canary.Decision` worth telling
(``start``, ``advance``, ``promote``, ``rollback``, ``abort``) into the
:class:`~kaip.notify.RolloutEvent` ``kaip up`` sends for the same move; :func:`announce` hands it
to the sender. :func:`post_rollout` tells the ``post-rollout`` webhooks how a rollout ended
(promoted, rolled back, aborted) through the injected ``tell``. Sent after the status that
records the decision is written, as its Event is. Pure but for the injected ``send`` and ``tell``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kaip.analysis import StepContext
from kaip.kube.operator.canary import Decision
from kaip.notify import EventName, RolloutEvent
from kaip.spec import App, Model
from kaip.spec.rollout import Analysis, Notification

Send = Callable[[Sequence[Notification], RolloutEvent], None]
Tell = Callable[[Analysis, StepContext], None]
"""Call the analysis's post-rollout webhooks about the ended rollout (never waited for)."""
OUTCOMES: dict[str, str] = {"promote": "promoted", "rollback": "rolled_back", "abort": "aborted"}
EVENTS: dict[str, EventName] = {
    "start": "started",
    "advance": "step",
    "promote": "promoted",
    "rollback": "rolled_back",
    "abort": "aborted",
}


def rollout_event(
    decision: Decision, resource: Model | App, namespace: str, from_revision: str
) -> RolloutEvent | None:
    """The notification for ``decision`` (None for a move that is not told: hold, replace)."""
    event = EVENTS.get(decision.action)
    if event is None:
        return None
    steps = resource.spec.rollout.steps
    step: int | None = None
    if event in ("started", "step"):
        passed = int(decision.evidence.get("step", 0) or 0)
        step = 1 if event == "started" else min(passed + 1, len(steps))
    return RolloutEvent(
        event, resource.kind, resource.metadata.name, from_revision, decision.revision,
        decision.reason, namespace=namespace, target="kubernetes", step=step,
        steps=len(steps), weight=steps[step - 1].weight if step else None,
    )  # fmt: skip


def announce(
    send: Send | None,
    resource: Model | App,
    decisions: Sequence[Decision],
    namespace: str,
    previous: Mapping[str, Any],
) -> None:
    """Send each decision worth telling to the resource's notification webhooks."""
    notifications = resource.spec.rollout.notifications
    if send is None or not notifications:
        return
    stable = ((previous.get("rollout") or {}).get("stable") or {}).get("revision", "")
    for decision in decisions:
        event = rollout_event(decision, resource, namespace, str(stable))
        if event is not None:
            send(notifications, event)


def post_rollout(
    tell: Tell | None,
    resource: Model | App,
    decisions: Sequence[Decision],
    namespace: str,
    previous: Mapping[str, Any],
) -> None:
    """Tell the resource's post-rollout webhooks of each decision that ended a rollout."""
    analysis = resource.spec.rollout.analysis
    if tell is None or analysis is None or not analysis.hooks("post-rollout"):
        return
    rollout = previous.get("rollout") or {}
    stable = str((rollout.get("stable") or {}).get("revision", ""))
    step = int(((rollout.get("canary") or {}).get("step", 0)) or 0)
    steps = resource.spec.rollout.steps
    for decision in decisions:
        outcome = OUTCOMES.get(decision.action)
        if outcome is None:
            continue
        index = min(step, len(steps) - 1)
        tell(
            analysis,
            StepContext(
                resource.kind, resource.metadata.name, namespace, decision.revision, stable,
                index + 1, len(steps), steps[index].weight, target="kubernetes",
                outcome=outcome, reason=decision.reason,
            ),
        )  # fmt: skip

"""A canary on a cluster, from outside the operator: ``kaip rollout ... -n NS`` and the portal.

The operator keeps a rollout's whole state in ``status.rollout`` and owns the status, so this
module never writes it. Promote and abort are *commands*: the annotation
``kaip.dev/rollout-command`` (see :mod:`kaip.kube.operator.canary`) names the action, the canary
revision it is meant for, a fresh id and who asked; the operator acts on each id once, for that
canary only, records the id in ``status.rollout.lastCommand`` and the outcome in
``status.rollout.lastDecision``, which this module waits for and prints. Undo writes the spec:
``status.rollout.previous`` holds the spec of the revision stable before the last promotion,
and putting it back in ``spec`` starts a canary to it, as any spec change does (under GitOps
the repository stays the source of truth: change it there too).

Used by ``kaip rollout status|promote|abort|undo NAME -n NS`` (:mod:`kaip.cli.rollout_commands`)
and by the portal on a cluster (:mod:`kaip.portal.kube`); never run inside the operator. Exit
codes (the errors raised) are those of the local commands: 0, and with ``--watch`` 4 rolled
back, 5 aborted, 6 still running at ``--timeout``; 1 when the operator does not answer a
command in time.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from kaip.errors import (
    PlatformError,
    RolloutAbortedError,
    RolloutFailedError,
    RolloutTimeoutError,
)
from kaip.kube.client import Session
from kaip.kube.operator.canary import COMMAND_ANNOTATION, Command
from kaip.spec import API_VERSION

COMMAND_TIMEOUT_S = 60.0
"""How long promote and abort wait for the operator to record the command."""
POLL_S = 1.0


class ClusterRollouts:
    """One resource's rollout through a :class:`Session`; ``say`` shows a line (the CLI
    prints it)."""

    def __init__(
        self,
        session: Session,
        namespace: str,
        name: str,
        *,
        say: Callable[[str], None] = lambda _line: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session, self.namespace, self.name = session, namespace, name
        self.say, self.clock, self.sleep = say, clock, sleep
        self.kind, self.path = self._find()

    def _find(self) -> tuple[str, str]:
        found = []
        for kind in ("Model", "App"):
            resource = self.session.resource(API_VERSION, kind)
            if resource is None:
                raise PlatformError(f"the cluster does not serve {kind} in {API_VERSION}")
            path = resource.path(self.namespace, self.name)
            if self.session.get(
                path, what=f"read {kind} {self.namespace}/{self.name}", missing_ok=True
            ):
                found.append((kind, path))
        if not found:
            raise PlatformError(
                f"no Model or App named {self.name!r} in namespace {self.namespace!r}"
            )
        return found[0]

    def body(self) -> dict[str, Any]:
        body = self.session.get(self.path, what=f"read {self.kind} {self.namespace}/{self.name}")
        return dict(body or {})

    @staticmethod
    def rollout_of(body: dict[str, Any]) -> dict[str, Any]:
        return dict((body.get("status") or {}).get("rollout") or {})

    # -- status ---------------------------------------------------------------------------

    def line(self, body: dict[str, Any]) -> str:
        """Where the rollout stands, in the words ``kaip rollout status`` uses locally."""
        rollout = self.rollout_of(body)
        stable = (rollout.get("stable") or {}).get("revision")
        canary = rollout.get("canary")
        decision = rollout.get("lastDecision") or {}
        label = f"{self.kind} {self.name}"
        if not canary:
            last = f"; last: {decision['action']}: {decision['reason']}" if decision else ""
            return f"{label}: no rollout in progress (stable {stable}){last}"
        steps = [
            s.get("weight")
            for s in ((body.get("spec") or {}).get("rollout") or {}).get("steps", [])
        ]
        step = int(canary["step"])
        weight = steps[step] if step < len(steps) else "?"
        said = f"{decision.get('action', 'waiting')}: {decision.get('reason', 'canary starting')}"
        return (
            f"{label}: {stable} -> {canary['revision']}, step {step + 1}/{len(steps)} "
            f"at {weight}%: {said}"
        )

    def watch(self, timeout_seconds: float) -> None:
        """Follow the running canary (else judge the last one) to its end; raise its outcome."""
        deadline = self.clock() + timeout_seconds
        body = self.body()
        canary = self.rollout_of(body).get("canary")
        target = canary["revision"] if canary else None
        last = ""
        while True:
            rollout = self.rollout_of(body)
            line = self.line(body)
            if line != last:
                self.say(line)
                last = line
            current = rollout.get("canary")
            if not current or current.get("revision") != target:
                self._judge(rollout, target)
                return
            if self.clock() >= deadline:
                raise RolloutTimeoutError(
                    f"{self.kind} {self.name}: the canary {target} is still running at "
                    "--timeout; it goes on"
                )
            self.sleep(POLL_S)
            body = self.body()

    def _judge(self, rollout: dict[str, Any], target: str | None) -> None:
        stable = (rollout.get("stable") or {}).get("revision")
        rolled = rollout.get("rolledBack") or {}
        decision = rollout.get("lastDecision") or {}
        label = f"{self.kind} {self.name}"
        if target is None:
            target = decision.get("revision") or stable
        if target == stable:
            self.say(f"{label}: {target} promoted")
            return
        if rolled.get("revision") == target:
            reason = str(rolled.get("reason", ""))
            if reason.startswith("aborted"):
                raise RolloutAbortedError(f"{label}: rollout of {target} {reason}")
            raise RolloutFailedError(f"{label}: rollout of {target} rolled back: {reason}")
        raise RolloutAbortedError(f"{label}: rollout of {target} was superseded")

    # -- commands -------------------------------------------------------------------------

    def send(self, action: str, who: str) -> Command:
        """Write promote, promote-full or abort for the running canary as the annotation the
        operator reads; the command written (its outcome comes later, in the status)."""
        rollout = self.rollout_of(self.body())
        canary = rollout.get("canary")
        if not canary:
            raise PlatformError(f"{self.kind} {self.name} has no rollout in progress")
        command = Command(secrets.token_hex(8), action, str(canary["revision"]), who)
        patch = {"metadata": {"annotations": {COMMAND_ANNOTATION: command.to_annotation()}}}
        self.session.request(
            "PATCH",
            self.path,
            body=patch,
            content_type="application/merge-patch+json",
            what=f"annotate {self.kind} {self.namespace}/{self.name} with {action}",
        )
        return command

    def command(self, action: str, who: str) -> str:
        """Send promote, promote-full or abort for the running canary; the operator's answer."""
        command = self.send(action, who)
        body = self.body()
        deadline = self.clock() + COMMAND_TIMEOUT_S
        while self.rollout_of(body).get("lastCommand") != command.id:
            if self.clock() >= deadline:
                raise PlatformError(
                    f"the operator has not acted on {action} within {COMMAND_TIMEOUT_S:g} s: is "
                    f"it running and watching {self.namespace}? (the command stays on "
                    f"{self.kind} {self.name} and is acted on when it runs)"
                )
            self.sleep(POLL_S)
            body = self.body()
        return self._answer(command, self.rollout_of(body))

    def _answer(self, command: Command, rollout: dict[str, Any]) -> str:
        label = f"{self.kind} {self.name}"
        stable = (rollout.get("stable") or {}).get("revision")
        canary = rollout.get("canary") or {}
        if canary.get("revision") == command.revision:
            decision = rollout.get("lastDecision") or {}
            said = f"{decision.get('action')}: {decision.get('reason')}" if decision else "released"
            return f"{label}: pause released by {command.by}: {said}"
        if stable == command.revision:
            return f"{label}: promoted to revision {stable}"
        rolled = rollout.get("rolledBack") or {}
        if rolled.get("revision") == command.revision:
            return (
                f"{label}: rollout of {command.revision} {rolled.get('reason')}, stable stays "
                f"{stable}"
            )
        return f"{label}: the canary {command.revision} had already ended (stable {stable})"

    def undo(self, to_revision: str | None) -> str:
        """Put the spec of the revision before stable back; the operator rolls it out."""
        body = self.body()
        rollout = self.rollout_of(body)
        label = f"{self.kind} {self.name}"
        if rollout.get("canary"):
            raise PlatformError(
                f"{label} has a rollout in progress: `kaip rollout abort {self.name}` sends all "
                "traffic back to the stable revision"
            )
        previous = rollout.get("previous") or {}
        revision, spec = previous.get("revision"), previous.get("spec")
        if not revision or not isinstance(spec, dict):
            raise PlatformError(
                f"{label}: no earlier revision was promoted before "
                f"{(rollout.get('stable') or {}).get('revision')} (status.rollout.previous)"
            )
        if to_revision is not None and not str(revision).startswith(to_revision):
            raise PlatformError(
                f"{label}: on a cluster undo goes back to the revision before stable only "
                f"({revision}); for another one, deploy its spec"
            )
        resource_version = (body.get("metadata") or {}).get("resourceVersion")
        self.session.request(
            "PATCH",
            self.path,
            body=[  # type: ignore[arg-type]
                {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
                {"op": "replace", "path": "/spec", "value": spec},
            ],
            content_type="application/json-patch+json",
            what=f"put the spec of revision {revision} back on {label}",
        )
        stable = (rollout.get("stable") or {}).get("revision")
        return f"undo: {label}: rolling out revision {revision} over {stable}"


def connect(kubeconfig: str | None, context: str | None) -> Session:
    """The cluster of ``kubeconfig`` (default ``$KUBECONFIG``, ``~/.kube/config``)."""
    return Session.connect(kubeconfig, context)


def namespace_of(session: Session, namespace: str | None) -> str:
    """``-n``, else the kubeconfig context's namespace, else ``default``."""
    return namespace or session.namespace or "default"


__all__ = ["ClusterRollouts", "connect", "namespace_of"]

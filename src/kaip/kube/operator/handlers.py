"""kopf wiring: which events start a pass over which resource, and when the next one comes.

kopf is used for what it is good at -- watching (list, watch, reconnect, re-login) -- and only
through *event* handlers, which keep no state on any object: the operator puts no annotation and
no finalizer on a Model, App or TrainingJob, so deleting one never waits for the operator, even
when it is not running. Every pass is the same
:meth:`~kaip.kube.operator.reconcile.Reconciler.reconcile` under a per-resource lock. It starts
on:

* an event of the resource itself whose *intent* changed: its generation (the spec), its labels,
  its user annotations or a rollout command (``kaip.dev/rollout-command``, written by ``kaip
  rollout promote|abort``; see :mod:`.canary`), or the first sight of it (a new resource, or
  every resource once when the operator starts). The operator's own status writes change none
  of these and cost nothing;
* an event of a workload it owns: the Deployments (``apps/v1``) and Jobs (``batch/v1``)
  labelled ``app.kubernetes.io/managed-by=kaip`` (a server-side label selector) whose
  controller ownerReference is a ``kaip.dev`` resource. The reconciler's ledger
  (:mod:`.owned`) decides: drift (deleted, or a field the operator set taken by another field
  manager) re-applies with force, a change of what readiness reads runs a pass, anything else
  (a status heartbeat, an event older than what a pass already read) costs nothing;
* the :class:`~.schedule.Schedule`, after each pass, from what it found
  (:func:`~kaip.kube.operator.reconcile.pace`): every ``interval`` while a canary runs (its steps
  are timed), after a growing delay (1, 2, 4 ... 60 s, logged as ``retrying in Ns``) while a
  temporary fault lasts, every ``resync`` as a safety net while it waits for its workloads,
  never once settled. An invalid spec or an RBAC denial is written to the status as ``Degraded``
  and waits for the resource to change; it is not retried in a loop.

The rollout's state lives in ``status.rollout`` (see :mod:`.canary`), so a restart loses nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, Final

import kopf

from kaip.errors import KubeError
from kaip.kube.client import MANAGED_BY_LABEL, PART_OF_LABEL
from kaip.kube.operator.canary import COMMAND_ANNOTATION
from kaip.kube.operator.owned import Verdict, owner_of
from kaip.kube.operator.reconcile import PROGRESS, Outcome, Reconciler, pace, user_annotations
from kaip.kube.operator.schedule import Key, Schedule
from kaip.spec import GROUP, VERSION

log = logging.getLogger("kaip.operator")

PLURALS: Final = {"Model": "models", "App": "apps", "TrainingJob": "trainingjobs"}
OWNED: Final = {"Deployment": ("apps", "v1", "deployments"), "Job": ("batch", "v1", "jobs")}
"""The workloads the operator watches: readiness comes from them, and drift is restored."""
OWNED_SELECTOR: Final = f"{MANAGED_BY_LABEL}=kaip,{PART_OF_LABEL}"
MAX_DELAY: Final = 60.0
LEGACY_FINALIZER: Final = f"{GROUP}/operator"
"""The finalizer kopf's timers put on resources before 2026-11-28; removed on sight."""


def backoff(retry: int) -> float:
    """Seconds before retry number ``retry`` (0-based): 1, 2, 4, ... up to a minute."""
    return float(min(MAX_DELAY, 2.0 ** min(retry, 16)))


def intent(body: Mapping[str, Any]) -> str:
    """What a user can change about a resource that a pass must act on (a rollout command too)."""
    meta = body.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    command = (meta.get("annotations") or {}).get(COMMAND_ANNOTATION)
    return json.dumps(
        [meta.get("generation"), labels, user_annotations(meta), command], sort_keys=True
    )


def configure(settings: kopf.OperatorSettings, *, workers: int = 8) -> None:
    """kopf settings of the kaip operator: standalone, watching only, posting nothing."""
    settings.peering.standalone = True
    settings.scanning.disabled = True  # watch what we were told; no namespace/CRD listing
    settings.posting.enabled = False  # kaip posts its own Events for rollout decisions
    settings.execution.max_workers = workers
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.error_backoffs = (1, 2, 4, 8, 16, 30)
    for group, _, plural in OWNED.values():
        # Only kaip's objects travel: the apiserver filters the list and the watch.
        settings.watching.label_selectors[group, plural] = OWNED_SELECTOR


class Controller:
    """The operator's handlers, its schedule and the state they share (all in memory)."""

    def __init__(
        self,
        reconciler: Reconciler,
        *,
        interval: float = 5.0,
        resync: float = 60.0,
        workers: int = 4,
    ) -> None:
        self.reconciler = reconciler
        self.interval = interval
        self.resync = resync
        self.schedule = Schedule(lambda key: self.run(key, "retry"), workers=workers)
        self._guard = threading.Lock()
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._intents: dict[str, str] = {}
        self._failures: dict[str, int] = {}
        self._triggers: dict[str, str] = {}
        """uid -> what the schedule's next pass is for ("progress", "resync" or "retry")."""
        self._keys: dict[str, Key] = {}
        """uid -> every resource seen (to wake the Models of a namespace)."""

    def _lock(self, uid: str) -> threading.Lock:
        with self._guard:
            return self._locks[uid]

    # -- one pass and what comes after it --

    def run(self, key: Key, trigger: str) -> None:
        """A pass over ``key`` now; plans the next one (or none, once it is settled or gone)."""
        if trigger == "retry":
            with self._guard:
                trigger = self._triggers.get(key.uid, "retry")
        with self._lock(key.uid):
            try:
                outcome = self.reconciler.reconcile(key.kind, key.namespace, key.name)
            except KubeError as exc:  # the status could not even be read or written
                self._retry(key, trigger, exc.message)
                return
            if outcome is None:  # deleted; its DELETED event clears the rest
                self.schedule.cancel(key.uid)
                return
            fault = outcome.fault
            if fault is not None and not fault.permanent:
                self._retry(key, trigger, fault.message)
            else:
                with self._guard:
                    self._failures.pop(key.uid, None)
                self._plan(key, outcome)
        self._report(key, outcome)
        if outcome.registered is not None:
            self._wake_models(key.namespace, outcome.registered)

    def _wake_models(self, namespace: str, model: str) -> None:
        """A pass soon over every Model in ``namespace``: one may follow the version just
        registered of ``model`` (which ones is each pass's to find out; few Models per
        namespace)."""
        with self._guard:
            keys = [
                k for k in self._keys.values() if k.kind == "Model" and k.namespace == namespace
            ]
        log.info("%s: a version of %s registered; looking at %d Model(s)", namespace, model,
                 len(keys))  # fmt: skip
        for key in keys:
            self.schedule.after(key, 0)

    def _plan(self, key: Key, outcome: Outcome) -> None:
        generation = outcome.status.get("observedGeneration")
        wanted = pace({"metadata": {"generation": generation}, "status": outcome.status})
        if wanted is None or (outcome.fault is not None and outcome.fault.permanent):
            self.schedule.cancel(key.uid)
            return
        with self._guard:
            self._triggers[key.uid] = wanted
        self.schedule.after(key, self.interval if wanted == PROGRESS else self.resync)

    def _retry(self, key: Key, trigger: str, message: str) -> None:
        with self._guard:
            failures = self._failures.get(key.uid, 0)
            self._failures[key.uid] = failures + 1
            self._triggers[key.uid] = "retry"
        delay = backoff(failures)
        log.warning(
            "%s: retrying in %gs (%s, attempt %d): %s",
            key.describe(),
            delay,
            trigger,
            failures + 1,
            message,
        )
        self.schedule.after(key, delay)

    def _report(self, key: Key, outcome: Outcome) -> None:
        for decision in outcome.decisions:
            log.info(
                "%s: %s %s: %s",
                key.describe(),
                decision.action,
                decision.revision,
                decision.reason,
            )

    def forget(self, uid: str) -> None:
        """Drop everything kept about a deleted resource."""
        self.schedule.cancel(uid)
        with self._lock(uid):  # after a pass in flight, which would record it again
            self.reconciler.forget(uid)
        with self._guard:
            self._locks.pop(uid, None)
            self._intents.pop(uid, None)
            self._failures.pop(uid, None)
            self._triggers.pop(uid, None)
            self._keys.pop(uid, None)

    # -- kopf event handlers --

    def on_resource(self, **kwargs: Any) -> None:
        body: kopf.Body = kwargs["body"]
        meta = body["metadata"]
        key = Key(str(body["kind"]), str(meta["namespace"]), str(meta["name"]), str(meta["uid"]))
        if kwargs.get("type") == "DELETED":
            self.forget(key.uid)
            return
        if LEGACY_FINALIZER in (meta.get("finalizers") or []):
            self._drop_legacy_finalizer(key, list(meta["finalizers"]))
        if meta.get("deletionTimestamp"):
            return  # being deleted: its owner references collect the rest
        wanted = intent(body)
        with self._guard:
            changed = self._intents.get(key.uid) != wanted
            self._intents[key.uid] = wanted
            self._keys[key.uid] = key
        if changed:  # new, changed, or first seen since the operator started
            self.run(key, "watch")

    def on_owned(self, kind: str) -> Callable[..., None]:
        def owned(**kwargs: Any) -> None:
            body: kopf.Body = kwargs["body"]
            owner = owner_of(body)
            if owner is None:
                return
            deleted = kwargs.get("type") == "DELETED"
            namespace = str(body["metadata"]["namespace"])
            key = Key(owner.kind, namespace, owner.name, owner.uid)
            if not deleted and self.reconciler.stale(owner.uid, kind, body):
                return  # late: a pass already saw this or newer; never wait for its lock
            with self._lock(owner.uid):
                verdict = self.reconciler.concerns(owner.uid, kind, body, deleted)
            if verdict is Verdict.QUIET:
                return
            if verdict is Verdict.DRIFT:
                log.info(
                    "%s: %s %s %s: applying again",
                    key.describe(),
                    kind,
                    body["metadata"]["name"],
                    "was deleted" if deleted else "was changed by another field manager",
                )
            self.run(key, kind.lower())

        return owned

    def _drop_legacy_finalizer(self, key: Key, finalizers: list[str]) -> None:
        kept = [f for f in finalizers if f != LEGACY_FINALIZER]
        try:
            self.reconciler.session.request(
                "PATCH",
                self.reconciler.path(key.kind, key.namespace, key.name),
                body={"metadata": {"finalizers": kept or None}},
                content_type="application/merge-patch+json",
                what=f"remove the old finalizer {LEGACY_FINALIZER} from {key.describe()}",
                missing_ok=True,
            )
        except KubeError as exc:
            log.warning("%s: %s", key.describe(), exc.message)

    # -- wiring --

    def registry(self, login: Callable[..., kopf.ConnectionInfo | None]) -> kopf.OperatorRegistry:
        """A kopf registry with every handler bound to this controller."""
        registry = kopf.OperatorRegistry()
        kopf.on.login(registry=registry)(login)
        for plural in PLURALS.values():
            kopf.on.event(GROUP, VERSION, plural, registry=registry, id="watch")(self.on_resource)
        for kind, owned_resource in OWNED.items():
            kopf.on.event(*owned_resource, registry=registry, id=f"owned-{kind.lower()}")(
                self.on_owned(kind)
            )
        return registry

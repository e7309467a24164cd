"""kopf wiring: when to reconcile which resource, and how failures are retried.

Every trigger calls the same :meth:`~kaip.kube.operator.reconcile.Reconciler.reconcile` under a
per-resource lock:

* the resource itself: operator start (resume), create, update;
* the workloads it owns: watch events on the Deployments (``apps/v1``) and Jobs (``batch/v1``)
  labelled ``app.kubernetes.io/managed-by=kaip`` (a server-side label selector) whose controller
  ownerReference is a ``kaip.dev`` resource. The reconciler's ledger
  (:mod:`.owned`) decides per event: drift (deleted, or a field the operator set taken by
  another field manager) re-applies with force, a change of what readiness reads runs a pass,
  anything else (a status heartbeat) costs nothing. These are kopf *event* handlers: kopf keeps
  no state on the watched objects and never patches them;
* timers (:func:`~kaip.kube.operator.reconcile.pace`): every ``interval`` while a canary runs
  (its steps are timed) or a temporary fault is retried; every ``resync`` as a safety net while a
  resource waits only for its workloads. A settled resource has no timer, so an operator with
  nothing to do stays idle.

API failures become :class:`kopf.TemporaryError` with an exponential delay (logged as
``retrying in Ns``); an invalid spec or an RBAC denial, already written to the status as
``Degraded``, becomes :class:`kopf.PermanentError` so kopf does not retry it in a loop. A pass
started by a watch event is not retried by kopf: its failure is in the status, and the resource's
timer retries it.

kopf keeps its own bookkeeping in annotations under ``kaip.dev`` on the custom resources only;
the rollout's state lives in ``status.rollout`` (see :mod:`.canary`), so a restart loses nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Final

import kopf

from kaip.errors import KubeError
from kaip.kube.client import MANAGED_BY_LABEL, PART_OF_LABEL
from kaip.kube.operator.owned import Owner, Verdict, owner_of
from kaip.kube.operator.reconcile import PROGRESS, RESYNC, Outcome, Reconciler, pace
from kaip.spec import GROUP, VERSION

log = logging.getLogger("kaip.operator")

PLURALS: Final = {"Model": "models", "App": "apps", "TrainingJob": "trainingjobs"}
OWNED: Final = {"Deployment": ("apps", "v1", "deployments"), "Job": ("batch", "v1", "jobs")}
"""The workloads the operator watches: readiness comes from them, and drift is restored."""
OWNED_SELECTOR: Final = f"{MANAGED_BY_LABEL}=kaip,{PART_OF_LABEL}"
MAX_DELAY: Final = 60.0


def backoff(retry: int) -> float:
    """Seconds before retry number ``retry`` (0-based): 1, 2, 4, ... up to a minute."""
    return float(min(MAX_DELAY, 2.0 ** min(retry, 16)))


def configure(settings: kopf.OperatorSettings, *, workers: int = 8) -> None:
    """kopf settings of the kaip operator (standalone, annotations for bookkeeping)."""
    settings.peering.standalone = True
    settings.scanning.disabled = True  # watch what we were told; no namespace/CRD listing
    settings.posting.enabled = False  # kaip posts its own Events for rollout decisions
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.execution.max_workers = workers
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.error_backoffs = (1, 2, 4, 8, 16, 30)
    for group, _, plural in OWNED.values():
        # Only kaip's objects travel: the apiserver filters the list and the watch.
        settings.watching.label_selectors[group, plural] = OWNED_SELECTOR


def build_registry(
    reconciler: Reconciler,
    login: Callable[..., kopf.ConnectionInfo | None],
    *,
    interval: float = 5.0,
    resync: float = 60.0,
) -> kopf.OperatorRegistry:
    """A registry with every kaip handler bound to ``reconciler``."""
    registry = kopf.OperatorRegistry()
    locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
    guard = threading.Lock()

    def lock_for(uid: str) -> threading.Lock:
        with guard:
            return locks[uid]

    def report(kind: str, namespace: str, name: str, outcome: Outcome) -> None:
        for decision in outcome.decisions:
            log.info(
                "%s %s/%s: %s %s: %s",
                kind,
                namespace,
                name,
                decision.action,
                decision.revision,
                decision.reason,
            )

    def handler(trigger: str) -> Callable[..., None]:
        def handle(**kwargs: Any) -> None:
            body: kopf.Body = kwargs["body"]
            retry = int(kwargs.get("retry") or 0)
            kind, meta = str(body["kind"]), body["metadata"]
            namespace, name = str(meta["namespace"]), str(meta["name"])

            def retrying(message: str) -> kopf.TemporaryError:
                delay = backoff(retry)
                log.warning(
                    "%s %s/%s: retrying in %gs (%s, attempt %d): %s",
                    kind,
                    namespace,
                    name,
                    delay,
                    trigger,
                    retry + 1,
                    message,
                )
                return kopf.TemporaryError(message, delay=delay)

            with lock_for(str(meta["uid"])):
                try:
                    outcome = reconciler.reconcile(kind, namespace, name)
                except KubeError as exc:
                    raise retrying(exc.message) from None
            if outcome is None:
                return
            report(kind, namespace, name, outcome)
            if outcome.fault is not None and outcome.fault.permanent:
                raise kopf.PermanentError(outcome.fault.message)
            if outcome.fault is not None:
                raise retrying(outcome.fault.message)

        return handle

    def watcher(kind: str) -> Callable[..., None]:
        def owned(**kwargs: Any) -> None:
            body: kopf.Body = kwargs["body"]
            owner = owner_of(body)
            if owner is None:
                return
            deleted = kwargs.get("type") == "DELETED"
            namespace = str(body["metadata"]["namespace"])
            with lock_for(owner.uid):
                verdict = reconciler.concerns(owner.uid, kind, body, deleted)
                if verdict is Verdict.QUIET:
                    return
                outcome = _pass(owner, namespace)
            if outcome is None:
                return  # the owner is gone (its objects are being collected), or the pass failed
            if verdict is Verdict.DRIFT:
                log.info(
                    "%s %s/%s: %s %s %s: applied again",
                    owner.kind,
                    namespace,
                    owner.name,
                    kind,
                    body["metadata"]["name"],
                    "was deleted" if deleted else "was changed by another field manager",
                )
            report(owner.kind, namespace, owner.name, outcome)

        return owned

    def _pass(owner: Owner, namespace: str) -> Outcome | None:
        try:
            outcome = reconciler.reconcile(owner.kind, namespace, owner.name)
        except KubeError as exc:
            log.warning("%s %s/%s: %s", owner.kind, namespace, owner.name, exc.message)
            return None
        if outcome is not None and outcome.fault is not None:
            log.warning("%s %s/%s: %s", owner.kind, namespace, owner.name, outcome.fault.message)
        return outcome

    def timed(pace_wanted: str) -> Callable[..., bool]:
        def when(body: kopf.Body, **_: Any) -> bool:
            return pace(body) == pace_wanted

        return when

    def forget(**kwargs: Any) -> None:
        # Owner references collect the objects; only the operator's own caches need clearing.
        # An event handler: without a finalizer kopf calls no deletion handler (the resource is
        # simply gone), but every watch event, DELETED included, reaches this one.
        if kwargs.get("type") != "DELETED":
            return
        uid = str(kwargs["body"]["metadata"]["uid"])
        with lock_for(uid):  # after a pass in flight, which would record it again
            reconciler.forget(uid)
        with guard:
            locks.pop(uid, None)

    kopf.on.login(registry=registry)(login)
    for plural in PLURALS.values():
        resource = (GROUP, VERSION, plural)
        kopf.on.resume(*resource, registry=registry, id="resume")(handler("resume"))
        kopf.on.create(*resource, registry=registry, id="create")(handler("create"))
        kopf.on.update(*resource, registry=registry, id="update")(handler("update"))
        # no finalizer, so deletion never waits for the operator
        kopf.on.event(*resource, registry=registry, id="forget")(forget)
        kopf.timer(
            *resource,
            registry=registry,
            id=PROGRESS,
            interval=interval,
            initial_delay=interval,
            when=timed(PROGRESS),
        )(handler(PROGRESS))
        kopf.timer(
            *resource,
            registry=registry,
            id=RESYNC,
            interval=resync,
            initial_delay=resync,
            when=timed(RESYNC),
        )(handler(RESYNC))
    for kind, owned_resource in OWNED.items():
        kopf.on.event(*owned_resource, registry=registry, id=f"owned-{kind.lower()}")(watcher(kind))
    return registry

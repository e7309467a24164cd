"""kopf wiring: when to reconcile which resource, and how failures are retried.

Every trigger (operator start, create, update, and a timer while a resource still has
something to wait for) calls the same :meth:`~kaip.kube.operator.reconcile.Reconciler.reconcile`
under a per-resource lock. API failures become :class:`kopf.TemporaryError` with an
exponential delay; an invalid spec or an RBAC denial, already written to the status as
``Degraded``, becomes :class:`kopf.PermanentError` so kopf does not retry it in a loop. A
settled resource has no timer, so an operator with nothing to do stays idle.

kopf keeps its own bookkeeping in annotations under ``kaip.dev``; the rollout's state lives in
``status.rollout`` (see :mod:`.canary`), so a restart loses nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Final

import kopf

from kaip.errors import KubeError
from kaip.kube.operator.reconcile import Reconciler, needs_attention
from kaip.spec import GROUP, VERSION

log = logging.getLogger("kaip.operator")

PLURALS: Final = {"Model": "models", "App": "apps", "TrainingJob": "trainingjobs"}
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


def build_registry(
    reconciler: Reconciler,
    login: Callable[..., kopf.ConnectionInfo | None],
    *,
    interval: float = 5.0,
) -> kopf.OperatorRegistry:
    """A registry with every kaip handler bound to ``reconciler``."""
    registry = kopf.OperatorRegistry()
    locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
    guard = threading.Lock()

    def lock_for(uid: str) -> threading.Lock:
        with guard:
            return locks[uid]

    def handle(**kwargs: Any) -> None:
        body: kopf.Body = kwargs["body"]
        retry = int(kwargs.get("retry") or 0)  # timers have no retry count
        kind, meta = str(body["kind"]), body["metadata"]
        with lock_for(str(meta["uid"])):
            try:
                outcome = reconciler.reconcile(kind, str(meta["namespace"]), str(meta["name"]))
            except KubeError as exc:
                raise kopf.TemporaryError(exc.message, delay=backoff(retry)) from None
        if outcome is None:
            return
        for decision in outcome.decisions:
            log.info(
                "%s %s/%s: %s %s: %s",
                kind,
                meta["namespace"],
                meta["name"],
                decision.action,
                decision.revision,
                decision.reason,
            )
        if outcome.fault is not None and outcome.fault.permanent:
            raise kopf.PermanentError(outcome.fault.message)
        if outcome.fault is not None:
            raise kopf.TemporaryError(outcome.fault.message, delay=backoff(retry))

    def attention(body: kopf.Body, **_: Any) -> bool:
        return needs_attention(body)

    def forget(**kwargs: Any) -> None:
        # Owner references collect the objects; only the operator's own caches need clearing.
        uid = str(kwargs["body"]["metadata"]["uid"])
        reconciler.forget(uid)
        with guard:
            locks.pop(uid, None)

    kopf.on.login(registry=registry)(login)
    for plural in PLURALS.values():
        resource = (GROUP, VERSION, plural)
        kopf.on.resume(*resource, registry=registry, id="resume")(handle)
        kopf.on.create(*resource, registry=registry, id="create")(handle)
        kopf.on.update(*resource, registry=registry, id="update")(handle)
        # optional: no finalizer, so deletion never waits for the operator
        kopf.on.delete(*resource, registry=registry, id="forget", optional=True)(forget)
        kopf.timer(
            *resource,
            registry=registry,
            id="progress",
            interval=interval,
            initial_delay=interval,
            when=attention,
        )(handle)
    return registry

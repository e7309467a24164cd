"""Leader election on a ``coordination.k8s.io/v1`` Lease: many operator replicas, one at work.

The rules are client-go's ``leaderelection`` (what kube-controller-manager and every
controller-runtime operator use), so the Lease reads the same to ``kubectl`` and to people:

* The Lease (``kaip-operator`` in the operator's namespace) names its ``holderIdentity``, when it
  last renewed (``renewTime``) and for how long that holds (``leaseDurationSeconds``).
* A candidate takes the Lease when nobody holds it, or when the holder has let it expire: the
  record has not changed for ``leaseDuration`` *by the candidate's own clock* since it first saw
  that record (clocks of two nodes are never compared). Taking or renewing is an update carrying
  the ``resourceVersion`` that was read, so of two candidates racing for it exactly one wins.
* The leader renews every ``retryPeriod``. If it has not renewed for ``renewDeadline`` (shorter
  than ``leaseDuration``) or finds another holder, it has lost: :class:`LeaseElector` calls
  ``on_lost`` (the operator exits, and restarts as a candidate) before anyone else can take the
  Lease, and until then :meth:`LeaseElector.check` refuses every write the operator would send
  (a fence for a leader that was frozen, e.g. by a stalled node, past its deadline).
* A leader that stops cleanly releases the Lease (no holder), so a successor need not wait.

Why not kopf's peering: it is a kopf-specific resource (``KopfPeering``) that pauses operators
of lower priority; it is not a Lease, offers no fencing, and needs its own CRD and RBAC. This is
about 200 lines over :class:`~kaip.kube.client.Session`, the only Kubernetes I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from kaip.errors import KubeError
from kaip.kube.client import Manifest, Session

log = logging.getLogger("kaip.operator.leader")

LEASES: Final = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


class NotLeaderError(KubeError):
    """A write was attempted by an operator that does not (or no longer surely) hold the Lease."""


@dataclass(frozen=True)
class Timings:
    """Seconds, as client-go's flags (``--leader-elect-lease-duration`` and friends) say them."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs retryPeriod < renewDeadline < leaseDuration "
                f"(got {self.retry_period}, {self.renew_deadline}, {self.lease_duration})"
            )


def _record_of(spec: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies one version of the Lease's record (a renewal changes it)."""
    return (
        spec.get("holderIdentity") or "",
        spec.get("renewTime"),
        spec.get("acquireTime"),
        spec.get("leaseTransitions"),
    )


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """Takes, holds and gives back one Lease for ``identity``."""

    def __init__(
        self,
        session: Session,
        namespace: str,
        name: str,
        identity: str,
        timings: Timings = Timings(),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timings = timings
        self._clock = clock
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None
        """When this elector last wrote the Lease as its holder (its own clock)."""
        self._lost = False
        self._lease: Manifest | None = None
        """The Lease as last written by this elector: a renewal sends it without reading."""

    @property
    def path(self) -> str:
        return LEASES.format(namespace=self.namespace) + f"/{self.name}"

    def describe(self) -> str:
        return f"lease {self.namespace}/{self.name} as {self.identity}"

    # -- one round ----------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True if this elector holds the Lease afterwards."""
        now = datetime.now(UTC)
        lease = self._lease if self._lease is not None and self.current() else None
        if lease is None:
            lease = self.session.get(self.path, what=f"read {self.describe()}", missing_ok=True)
        if lease is None:
            return self._write("POST", self._record(None, now), f"create {self.describe()}")
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = _record_of(spec)
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()
        duration = float(spec.get("leaseDurationSeconds") or self.timings.lease_duration)
        if holder and holder != self.identity and self._clock() < self._observed_at + duration:
            return False  # held by another, and not yet expired by our clock
        return self._write("PUT", self._record(lease, now), f"take {self.describe()}")

    def _record(self, lease: Manifest | None, now: datetime) -> Manifest:
        spec: dict[str, Any] = dict((lease or {}).get("spec") or {})
        ours = spec.get("holderIdentity") == self.identity
        transitions = int(spec.get("leaseTransitions") or 0)
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if lease is not None:
            meta["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": round(self.timings.lease_duration),
                "acquireTime": spec.get("acquireTime") if ours else _micro_time(now),
                "renewTime": _micro_time(now),
                "leaseTransitions": transitions if ours or lease is None else transitions + 1,
            },
        }

    def _write(self, method: str, body: Manifest, what: str) -> bool:
        """Send the record; True if the server now has this elector as the holder."""
        path = self.path if method == "PUT" else LEASES.format(namespace=self.namespace)
        self._lease = None  # read it again next time unless this write succeeds
        try:
            written = self.session.request(method, path, body=body, what=what)
        except KubeError as exc:
            # A conflict (another candidate wrote first) or a fault: either way not ours now.
            log.debug("%s: %s", what, exc.message)
            return False
        spec = (written or {}).get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return False
        self._lease = written
        self._renewed_at = self._clock()
        self._observed = _record_of(spec)
        self._observed_at = self._renewed_at
        return True

    # -- the lifecycle --------------------------------------------------------------------------

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this elector holds the Lease (True) or ``stop`` is set (False)."""
        log.info("waiting to lead: %s", self.describe())
        while not stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    log.info("leading: %s", self.describe())
                    return True
            except KubeError as exc:
                log.warning("leader election: %s", exc.message)
            stop.wait(self.timings.retry_period)
        return False

    def keep(self, stop: threading.Event, on_lost: Callable[[], None]) -> None:
        """Renew until ``stop`` is set (then release) or the Lease is lost (then ``on_lost``)."""
        while not stop.wait(self.timings.retry_period):
            renewed = self._renewed_at
            try:
                self.try_acquire_or_renew()
            except KubeError as exc:
                log.warning("renewing %s: %s", self.describe(), exc.message)
            if self._renewed_at != renewed:
                continue
            other = self._observed[0] if self._observed else ""
            if (other and other != self.identity) or not self.current():
                self._lost = True
                log.error("lost %s (holder now %r): stopping", self.describe(), other or None)
                on_lost()
                return
        self.release()

    def current(self) -> bool:
        """Whether this elector surely still holds the Lease (renewed within renewDeadline)."""
        renewed = self._renewed_at
        return (
            not self._lost
            and renewed is not None
            and self._clock() - renewed < self.timings.renew_deadline
        )

    def check(self) -> None:
        """Raise :class:`NotLeaderError` unless :meth:`current` (the fence before each write)."""
        if not self.current():
            raise NotLeaderError(f"not writing: this operator does not hold {self.describe()}")

    def release(self) -> None:
        """Give the Lease back (no holder) if this elector still holds it."""
        if not self.current():
            return
        try:
            lease = self.session.get(self.path, what=f"read {self.describe()}", missing_ok=True)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            spec = dict(lease["spec"])
            now = _micro_time(datetime.now(UTC))
            spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=now)
            lease["spec"] = spec
            self.session.request("PUT", self.path, body=lease, what=f"release {self.describe()}")
            log.info("released %s", self.describe())
        except KubeError as exc:
            log.warning("releasing %s: %s", self.describe(), exc.message)
        finally:
            self._renewed_at = None

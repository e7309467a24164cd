"""What the operator last applied and saw of the workloads it owns, and what a watch event on one
of them calls for.

The operator watches the Deployments and Jobs it owns (:mod:`.handlers`). For each event the
:class:`Ledger` answers with a :class:`Verdict`:

* ``DRIFT`` -- the object was deleted, or someone else took over a field that the operator's
  last server-side apply set. The field manager's entry in ``metadata.managedFields`` is the
  record: another manager that changes a value the operator set (``kubectl set image``,
  ``kubectl scale`` of a pinned replica count, an apply with ``--force-conflicts``) takes that
  field out of the operator's set. Fields the operator never sets (``replicas`` when an
  autoscaler owns it) are not in the set, so changing them is no drift and is never fought.
  The one field handed over after creation is a Job's ``spec.suspend``, which Kueue flips when
  it admits the Job.
* ``CHANGED`` -- nothing drifted, but what the status shows of it (replicas, available replicas,
  whether the controller rolled out the latest spec; a Job's counts and conditions) differs from
  what the last pass read: a pass is due. Steps in between (the controller seeing a new
  generation, a ReplicaSet scaled up but not available yet) cost nothing.
* ``QUIET`` -- nothing the status shows could have changed: no request at all. A status-only
  change of a settled resource's Deployment (a condition's heartbeat) costs nothing.

Events that predate what the operator last applied or read are ``QUIET`` too: one about an earlier
incarnation (another uid), one with a ``metadata.generation`` below the one the apply answered
with, or one whose ``resourceVersion`` is not newer than the version the last apply or read
returned (the watch delivers them late; what they show was already overwritten). Resource
versions of one resource are comparable integers since Kubernetes 1.35 (KEP-5504,
:func:`compare_resource_version`); where one is not, the event is judged by its content as before.
A thousand Models converging on two cores showed why: the Deployments' watch fell minutes behind,
and each late event that differed from the last read ran a pass of its own (3,000 passes after
every Model was Ready). So is every object of an
owner the operator has not applied since it started: the owner's own start-up pass comes anyway.

Also the operator's rule for taking over (:func:`refusal_for`): it writes only over objects
whose controller owner reference is the resource it reconciles. An object of the same name that
is anyone else's -- created by hand or by another tool, applied by ``kaip apply``, or owned by
another resource -- stops the pass before any write, and :func:`foreign_fault` says which
objects and why in the resource's ``Degraded`` condition. The one exception waits instead of
failing: objects of an earlier resource of the same kind and name (deleted and created again),
which the garbage collector is about to remove.

Pure: no I/O, no kopf; the reconciler feeds it what it applied and read.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kaip.kube.client.objects import ObjectRef, Refusal, controller_of, made_by
from kaip.kube.operator.status import Fault
from kaip.spec import GROUP, KINDS

WATCHED_KINDS: Final = ("Deployment", "Job")
HANDED_OVER: Final[Mapping[str, tuple[tuple[str, ...], ...]]] = {
    "Job": (("f:spec", "f:suspend"),),  # Kueue unsuspends an admitted Job
}
"""Per kind, the managed-fields paths the operator sets at creation and then leaves to others."""

Key = tuple[str, str]
"""(kind, name) of an owned object; the namespace is its owner's."""


class Verdict(enum.Enum):
    QUIET = "quiet"
    CHANGED = "changed"
    DRIFT = "drift"


@dataclass(frozen=True)
class Owner:
    """The kaip resource that controls an object, from its controller ownerReference."""

    kind: str
    name: str
    uid: str


def owner_of(obj: Mapping[str, Any]) -> Owner | None:
    """The kaip.dev resource that is ``obj``'s controller, or None when it is not one of ours."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if not isinstance(ref, Mapping) or not ref.get("controller"):
            continue
        group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        if group == GROUP and ref.get("kind") in KINDS and ref.get("name") and ref.get("uid"):
            return Owner(str(ref["kind"]), str(ref["name"]), str(ref["uid"]))
    return None


FOREIGN: Final = "ForeignObjects"
"""The Degraded reason while objects named for a resource belong to someone else."""


def refusal_for(owner_uid: str) -> Refusal:
    """What the operator may not write over for the resource ``owner_uid``: anything it does not
    control, whoever made it."""

    def refusal(live: Mapping[str, Any]) -> str | None:
        controller = controller_of(dict(live))
        if controller is not None and controller.get("uid") == owner_uid:
            return None
        return made_by(dict(live))

    return refusal


def _earlier_incarnation(live: Mapping[str, Any], kind: str, name: str, uid: str) -> bool:
    owner = owner_of(live)
    return owner is not None and (owner.kind, owner.name) == (kind, name) and owner.uid != uid


def foreign_fault(
    kind: str, name: str, uid: str, objects: Iterable[tuple[ObjectRef, Mapping[str, Any], str]]
) -> Fault:
    """The fault of a pass that found ``objects`` (ref, live object, why) in the way."""
    found = list(objects)
    if found and all(_earlier_incarnation(live, kind, name, uid) for _, live, _ in found):
        names = ", ".join(f"{ref.kind} {ref.namespace}/{ref.name}" for ref, _, _ in found)
        return Fault(
            "Retrying",
            f"waiting for the garbage collector to remove {names}, left by an earlier {kind} "
            "of this name",
            permanent=False,
        )
    lines = "; ".join(f"{ref.kind} {ref.namespace}/{ref.name} ({why})" for ref, _, why in found)
    one = len(found) == 1
    it, exists = ("it", "it exists and is") if one else ("them", "they exist and are")
    return Fault(
        FOREIGN,
        f"{lines}: {exists} not this {kind}'s, so kaip leaves {it} untouched and applies "
        f"nothing. Delete or rename {it} (or rename the {kind}), then change the {kind} (an "
        "annotation will do) to try again",
        permanent=True,
    )


def applied_fields(kind: str, obj: Mapping[str, Any], manager: str) -> str | None:
    """A digest of the fields of ``kind`` ``obj`` that ``manager`` set with server-side apply
    (``fieldsV1``), handed-over ones left out; None when it has no apply entry (any more).

    A digest, not the fields: a Deployment's field set is a deep tree, and the ledger keeps one
    per owned workload (a thousand Models kept ~100 MiB of them)."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if (
            isinstance(entry, Mapping)
            and entry.get("manager") == manager
            and entry.get("operation") == "Apply"
            and not entry.get("subresource")
        ):
            fields = _without(entry.get("fieldsV1") or {}, HANDED_OVER.get(kind, ()))
            text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
            return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    return None


def _without(fields: Any, paths: Iterable[tuple[str, ...]]) -> Any:
    if not isinstance(fields, Mapping):
        return fields
    trimmed = {k: v for k, v in fields.items()}
    for path in paths:
        head, *rest = path
        if head not in trimmed:
            continue
        if rest:
            trimmed[head] = _without(trimmed[head], [tuple(rest)])
        else:
            del trimmed[head]
    return trimmed


def summary(kind: str, obj: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What the status of an owner reads from ``obj``; () when it does not exist."""
    if not obj:
        return ()
    spec: Mapping[str, Any] = obj.get("spec") or {}
    status: Mapping[str, Any] = obj.get("status") or {}
    if kind == "Deployment":  # as RevisionState: replicas, ready replicas and whether all ready
        replicas = int(spec.get("replicas", 1))
        available = int(status.get("availableReplicas", 0))
        generation = int((obj.get("metadata") or {}).get("generation", 0))
        caught_up = int(status.get("observedGeneration", 0)) >= generation
        updated = int(status.get("updatedReplicas", 0)) >= replicas
        return (replicas, available, caught_up and updated and available >= replicas)
    conditions = sorted(
        (str(c.get("type")), str(c.get("reason", "")), str(c.get("message", "")))
        for c in status.get("conditions") or []
        if isinstance(c, Mapping) and c.get("status") == "True"
    )
    return (
        int(status.get("active", 0)),
        int(status.get("succeeded", 0)),
        int(status.get("failed", 0)),
        tuple(conditions),
    )


@dataclass(frozen=True)
class _Applied:
    uid: str
    generation: int
    fields: str | None


@dataclass
class _Record:
    applied: dict[Key, _Applied] = field(default_factory=dict)
    seen: dict[Key, tuple[Any, ...]] = field(default_factory=dict)
    versions: dict[Key, str] = field(default_factory=dict)
    """The newest ``resourceVersion`` an apply answered with or a pass read, per object."""


def _generation(obj: Mapping[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation", 0))


def _resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def compare_resource_version(a: str, b: str) -> int | None:
    """-1, 0 or 1 as ``a`` is older than, the same as or newer than ``b``; None when either is
    not a resource version one may compare (a positive integer without leading zeros: the rule
    of apimachinery's ``resourceversion.CompareResourceVersion``, KEP-5504)."""
    if not (_comparable(a) and _comparable(b)):
        return None
    left, right = (len(a), a), (len(b), b)  # no leading zeros: longer is larger
    return (left > right) - (left < right)


def _comparable(version: str) -> bool:
    return version.isascii() and version.isdigit() and not version.startswith("0")


@dataclass
class Ledger:
    """Per owner uid: the fields each owned workload got from the last apply, and what the last
    pass read of it. Lives in memory only: after a restart every owner is applied again."""

    manager: str
    _records: dict[str, _Record] = field(default_factory=dict, repr=False)

    def applied(self, uid: str, objects: Iterable[Mapping[str, Any]]) -> None:
        """Record what one apply of ``uid``'s whole set answered (replacing the last record)."""
        record = self._records.setdefault(uid, _Record())
        objects = list(objects)
        for o in objects:
            if o.get("kind") in WATCHED_KINDS:
                self._saw(record, (str(o["kind"]), str(o["metadata"]["name"])), o)
        record.applied = {
            (str(o["kind"]), str(o["metadata"]["name"])): _Applied(
                str(o["metadata"].get("uid")),
                _generation(o),
                applied_fields(str(o["kind"]), o, self.manager),
            )
            for o in objects
            if o.get("kind") in WATCHED_KINDS
        }

    def observed(self, uid: str, kind: str, name: str, obj: Mapping[str, Any] | None) -> None:
        """Record what a pass read of ``uid``'s ``kind`` ``name`` (None: it does not exist)."""
        record = self._records.setdefault(uid, _Record())
        record.seen[(kind, name)] = summary(kind, obj)
        last = record.applied.get((kind, name))
        if obj and (last is None or not self._drifted(kind, obj, last)):
            # A read that shows drift is not remembered: its watch event must still say DRIFT.
            self._saw(record, (kind, name), obj)

    def _drifted(self, kind: str, obj: Mapping[str, Any], last: _Applied) -> bool:
        if str((obj.get("metadata") or {}).get("uid")) != last.uid:
            return True
        return applied_fields(kind, obj, self.manager) != last.fields

    @staticmethod
    def _saw(record: _Record, key: Key, obj: Mapping[str, Any]) -> None:
        version, known = _resource_version(obj), record.versions.get(key)
        if known is None or compare_resource_version(version, known) != -1:
            record.versions[key] = version

    def stale(self, uid: str, kind: str, obj: Mapping[str, Any]) -> bool:
        """Whether a watch event shows ``obj`` as it was at or before the last apply or read.

        Safe without the owner's lock: what the ledger has seen only gets newer, so an event
        that is stale stays stale."""
        record = self._records.get(uid)
        if record is None:
            return False
        known = record.versions.get((kind, str((obj.get("metadata") or {}).get("name"))))
        if known is None:
            return False
        return compare_resource_version(_resource_version(obj), known) in (-1, 0)

    def forget(self, uid: str) -> None:
        self._records.pop(uid, None)

    def verdict(self, uid: str, kind: str, obj: Mapping[str, Any], *, deleted: bool) -> Verdict:
        """What a watch event about ``kind`` ``obj`` (owned by ``uid``) calls for."""
        record = self._records.get(uid)
        meta = obj.get("metadata") or {}
        key = (kind, str(meta.get("name")))
        last = None if record is None else record.applied.get(key)
        if record is None or last is None:
            return Verdict.QUIET  # not applied since start, or not ours to keep (being pruned)
        if str(meta.get("uid")) != last.uid:
            return Verdict.QUIET  # an earlier incarnation
        if deleted:
            return Verdict.DRIFT
        if _generation(obj) < last.generation or self.stale(uid, kind, obj):
            return Verdict.QUIET  # older than the last apply or read
        if applied_fields(kind, obj, self.manager) != last.fields:
            return Verdict.DRIFT
        if record.seen.get(key) != summary(kind, obj):
            return Verdict.CHANGED
        return Verdict.QUIET

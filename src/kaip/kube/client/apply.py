"""Server-side apply of a set of manifests, pruning what left the set, deleting, and waiting.

A set is every object labelled ``app.kubernetes.io/managed-by=kaip`` and
``kaip.dev/part-of=<name>``; :func:`apply` stamps both labels on each manifest, so pruning finds
exactly what an earlier apply of the same set created and this one no longer has. Objects
controlled by another object (ReplicaSets, Pods) are never pruned: their owner's deletion
collects them.

Never silently takes over: an object that already exists under a manifest's name and that kaip
did not create (judged by a ``refuse`` rule, :func:`~kaip.kube.client.objects.unmanaged` for
``kaip apply``, the owner reference for the operator) stops the whole apply before its first
write, unless the caller asks to ``adopt`` it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from kaip.errors import ConfigError, ForeignObjectError, KubeError, KubeForbiddenError
from kaip.kube.client.objects import (
    PRUNE_KINDS,
    Change,
    Manifest,
    ObjectRef,
    Outcome,
    Refusal,
    Result,
    apply_order,
    check_manifest,
    delete_order,
    ownership_selector,
    readiness,
    ref_of,
    same_content,
    unmanaged,
    with_ownership,
)
from kaip.kube.client.session import APPLY_PATCH, Resource, Session

FIELD_MANAGER = "kaip"
Identity = tuple[str, str, str | None, str]
"""``ObjectRef.identity``: group, kind, namespace, name."""


def apply(
    session: Session,
    manifests: Sequence[Manifest],
    *,
    part_of: str,
    namespace: str | None = None,
    prune: bool = False,
    dry_run: bool = False,
    force_conflicts: bool = False,
    field_manager: str = FIELD_MANAGER,
    report: bool = True,
    refuse: Refusal | None = None,
    adopt: bool = False,
    known: Collection[Identity] = frozenset(),
) -> Result:
    """Server-side apply ``manifests`` as the set ``part_of``; prune the set's leftovers if asked.

    ``namespace`` places namespaced manifests that name none (default: the context's namespace).
    With ``dry_run`` the server validates and admits every change but persists none. ``report``
    reads each object before applying it to tell created, configured and unchanged apart; a
    caller that does not show the outcome (the operator) passes False, and its changes read
    ``applied``.

    Taking over: every object that already exists is first judged by ``refuse`` (default:
    :func:`~kaip.kube.client.objects.unmanaged`, anything kaip did not create); when any is
    refused, :class:`ForeignObjectError` names them all and nothing is written. ``adopt`` takes
    them over instead, fields included (applied with force; their outcome reads ``adopted``).
    Objects in ``known`` (identities the caller has seen to be its own) are not read for this:
    without ``report``, an apply of only known objects reads nothing.
    """
    _check(manifests)
    default_namespace = namespace or session.namespace
    query = {"fieldManager": field_manager, "force": "true" if force_conflicts else "false"}
    if dry_run:
        query["dryRun"] = "All"
    defines_crds = any(m["kind"] == "CustomResourceDefinition" for m in manifests)
    _check_served(session, manifests)
    ordered = apply_order(list(manifests))
    refusal = refuse or unmanaged(field_manager)
    existing = _read_existing(session, ordered, default_namespace, report, known)
    foreign = [
        (ref, live, why)
        for ref, live in existing.items()
        if live is not None and ref.identity not in known and (why := refusal(live)) is not None
    ]
    if foreign and not adopt:
        raise ForeignObjectError(_foreign_message(foreign), tuple(foreign))
    adopted = {ref.identity for ref, _, _ in foreign}
    changes: list[Change] = []
    for manifest in ordered:
        resource = _resource_for(session, manifest, wait_for_crd=defines_crds and not dry_run)
        ns = _namespace_of(manifest, resource, default_namespace)
        ref = ref_of(manifest, ns)
        body = with_ownership(manifest, part_of, ns)
        path = resource.path(ns, ref.name)
        if ref in existing:
            before = existing[ref]
        elif report:  # its kind was not served yet: its CRD is part of this apply
            before = session.get(path, what=f"apply {ref.describe()}", missing_ok=True)
        else:
            before = None
        after = session.request(
            "PATCH",
            path,
            query={**query, "force": "true"} if ref.identity in adopted else query,
            body=body,
            content_type=APPLY_PATCH,
            what=f"apply {ref.describe()}",
        )
        if ref.identity in adopted:
            outcome = Outcome.adopted
        elif not report:
            outcome = Outcome.applied
        elif before is None:
            outcome = Outcome.created
        elif after is not None and same_content(before, after):
            outcome = Outcome.unchanged
        else:
            outcome = Outcome.configured
        changes.append(Change(ref, outcome, after))
    if prune:
        changes += _prune(
            session, part_of, manifests, changes, default_namespace, dry_run, Outcome.pruned
        )
    return Result(tuple(changes), dry_run=dry_run)


def _read_existing(
    session: Session,
    manifests: Sequence[Manifest],
    default_namespace: str,
    report: bool,
    known: Collection[Identity],
) -> dict[ObjectRef, Manifest | None]:
    """Each manifest's object as the server has it now (None: absent), read before any write.

    Skipped: objects in ``known`` when not ``report``ing, and kinds not served yet (their CRD is
    part of this apply, so none of them can exist).
    """
    found: dict[ObjectRef, Manifest | None] = {}
    for manifest in manifests:
        resource = session.resource(str(manifest["apiVersion"]), str(manifest["kind"]))
        if resource is None:
            continue
        ns = _namespace_of(manifest, resource, default_namespace)
        ref = ref_of(manifest, ns)
        if not report and ref.identity in known:
            continue
        found[ref] = session.get(
            resource.path(ns, ref.name), what=f"apply {ref.describe()}", missing_ok=True
        )
    return found


def _foreign_message(foreign: Sequence[tuple[ObjectRef, Manifest, str]]) -> str:
    lines = [f"  {ref.kind} {ref.namespace or '-'}/{ref.name}: {why}" for ref, _, why in foreign]
    return (
        f"{len(foreign)} object(s) already exist and kaip will not take them over "
        "(nothing was applied):\n" + "\n".join(lines) + "\nrename the resource, delete those "
        "objects, or pass --adopt to take them over (kaip then labels them as part of this set, "
        "and --prune may delete them later)"
    )


def delete(
    session: Session,
    manifests: Sequence[Manifest],
    *,
    part_of: str | None = None,
    namespace: str | None = None,
    dry_run: bool = False,
) -> Result:
    """Delete the objects of ``manifests`` and, given ``part_of``, whatever else is in that set."""
    _check(manifests)
    default_namespace = namespace or session.namespace
    query = {"propagationPolicy": "Background"}
    if dry_run:
        query["dryRun"] = "All"
    changes: list[Change] = []
    for manifest in delete_order(list(manifests)):
        resource = session.resource(str(manifest["apiVersion"]), str(manifest["kind"]))
        if resource is None:  # its CRD is gone, so is the object
            changes.append(
                Change(ref_of(manifest, manifest["metadata"].get("namespace")), Outcome.absent)
            )
            continue
        ns = _namespace_of(manifest, resource, default_namespace)
        ref = ref_of(manifest, ns)
        gone = session.request(
            "DELETE",
            resource.path(ns, ref.name),
            query=query,
            what=f"delete {ref.describe()}",
            missing_ok=True,
        )
        changes.append(Change(ref, Outcome.absent if gone is None else Outcome.deleted))
    if part_of:
        changes += _prune(
            session, part_of, manifests, changes, default_namespace, dry_run, Outcome.deleted
        )
    return Result(tuple(changes), dry_run=dry_run)


def wait_ready(
    session: Session,
    refs: Iterable[ObjectRef],
    *,
    timeout: float,
    on_wait: Callable[[ObjectRef, str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once every object in ``refs`` is ready (see ``objects.readiness``).

    Raises :class:`KubeError` naming what was still not ready after ``timeout`` seconds.
    ``on_wait`` hears each object the first time it is found not ready.
    """
    pending = {ref: "" for ref in refs}
    announced: set[ObjectRef] = set()
    deadline = clock() + timeout
    while True:
        for ref in sorted(pending):
            resource = session.resource(ref.api_version, ref.kind)
            obj = (
                None
                if resource is None
                else session.get(
                    resource.path(ref.namespace, ref.name),
                    what=f"read {ref.describe()}",
                    missing_ok=True,
                )
            )
            waiting = "it does not exist" if obj is None else readiness(obj)
            if waiting is None:
                del pending[ref]
            else:
                pending[ref] = waiting
                if on_wait and ref not in announced:
                    announced.add(ref)
                    on_wait(ref, waiting)
        if not pending:
            return
        if clock() >= deadline:
            lines = "; ".join(f"{ref.describe()}: {why}" for ref, why in sorted(pending.items()))
            raise KubeError(f"timed out after {timeout:g}s waiting for readiness: {lines}")
        sleep(1.0)


# -- helpers -----------------------------------------------------------------------------------


def _check(manifests: Sequence[Any]) -> None:
    problems = [p for i, m in enumerate(manifests) for p in check_manifest(m, i)]
    if problems:
        raise ConfigError("cannot apply these manifests:\n" + "\n".join(problems))


def _check_served(session: Session, manifests: Sequence[Manifest]) -> None:
    """Refuse before any write when a kind is served nowhere and no CRD here defines it."""
    defined = {
        (
            str((m.get("spec") or {}).get("group")),
            str(((m.get("spec") or {}).get("names") or {}).get("kind")),
        )
        for m in manifests
        if m["kind"] == "CustomResourceDefinition"
    }
    missing = sorted(
        {
            f"{m['kind']} ({m['apiVersion']})"
            for m in manifests
            if (str(m["apiVersion"]).rpartition("/")[0], str(m["kind"])) not in defined
            and session.resource(str(m["apiVersion"]), str(m["kind"])) is None
        }
    )
    if missing:
        raise KubeError(
            f"the cluster at {session.server} does not serve {', '.join(missing)}: install "
            "the CustomResourceDefinitions first (nothing was applied)"
        )


def _resource_for(session: Session, manifest: Manifest, *, wait_for_crd: bool) -> Resource:
    api_version, kind = str(manifest["apiVersion"]), str(manifest["kind"])
    resource = session.resource(api_version, kind)
    # A CRD applied earlier in this run takes a moment to be served: ask the server afresh each
    # time (the session otherwise re-asks about a missing kind only every REDISCOVER_AFTER s, so
    # this wait lasted until then, ~30 s, however soon the CRD was served).
    deadline = time.monotonic() + (30.0 if wait_for_crd else 0.0)
    while resource is None and time.monotonic() < deadline:
        time.sleep(0.5)
        resource = session.resource(api_version, kind, fresh=True)
    if resource is None:
        raise KubeError(
            f"the cluster at {session.server} does not serve {kind} in {api_version}: "
            "is its CustomResourceDefinition installed?"
        )
    return resource


def _namespace_of(manifest: Manifest, resource: Resource, default: str) -> str | None:
    if not resource.namespaced:
        return None
    return str(manifest["metadata"].get("namespace") or default)


def _prune(
    session: Session,
    part_of: str,
    manifests: Sequence[Manifest],
    done: Sequence[Change],
    default_namespace: str,
    dry_run: bool,
    outcome: Outcome,
) -> list[Change]:
    """Delete the set's objects that ``done`` did not touch.

    Looks at the kinds of ``manifests`` (and PRUNE_KINDS) in every namespace ``done`` touched,
    plus the default one.
    """
    keep = {c.ref.identity for c in done}
    kinds = {(str(m["apiVersion"]), str(m["kind"])) for m in manifests}
    namespaces = {c.ref.namespace for c in done if c.ref.namespace} | {default_namespace}
    selector = {"labelSelector": ownership_selector(part_of)}
    delete_query = {"propagationPolicy": "Background"}
    if dry_run:
        delete_query["dryRun"] = "All"
    seen_groups_kinds: set[tuple[str, str]] = set()
    changes: list[Change] = []
    for api_version, kind in [*sorted(kinds), *PRUNE_KINDS]:
        group_kind = (api_version.rpartition("/")[0], kind)
        if group_kind in seen_groups_kinds:
            continue
        seen_groups_kinds.add(group_kind)
        resource = session.resource(api_version, kind)
        if resource is None:
            continue
        for ns in sorted(namespaces) if resource.namespaced else [None]:
            try:
                listed = session.request(
                    "GET", resource.path(ns), query=selector, what=f"list {kind} to prune"
                )
            except KubeForbiddenError:
                if (api_version, kind) in kinds:
                    raise
                continue  # a kind this set never used, which this user may not even list
            for item in (listed or {}).get("items", []):
                metadata = item.get("metadata") or {}
                if any(o.get("controller") for o in metadata.get("ownerReferences") or []):
                    continue
                ref = ObjectRef(api_version, kind, str(metadata["name"]), ns)
                if ref.identity in keep:
                    continue
                gone = session.request(
                    "DELETE",
                    resource.path(ns, ref.name),
                    query=delete_query,
                    what=f"prune {ref.describe()}",
                    missing_ok=True,
                )
                if gone is not None:
                    changes.append(Change(ref, outcome))
    return changes

"""One reconcile pass of one kaip custom resource: read, validate, plan, render, apply, report.

:meth:`Reconciler.reconcile` reads the resource fresh from the API (never trusting a cached
copy, so a canary's state is always the one last written), validates its spec with the
:mod:`kaip.spec` models, moves its rollout one tick (:mod:`.canary`), renders with the same
:func:`kaip.render.kube.render_manifests` as ``kaip render``, stamps owner references (deleting
the resource garbage-collects everything), applies with server-side apply as field manager
``kaip``, deletes what it owns but no longer renders, and writes ``.status`` as a JSON merge
patch (none when nothing changed, so a settled resource costs no writes). Decisions become
Kubernetes Events.

A pass applies only when the render changed since its last apply, or when a watch event on an
owned Deployment or Job showed drift (:meth:`Reconciler.concerns`, judged by the
:class:`~kaip.kube.operator.owned.Ledger` of what was applied and read): then it applies the
whole set again with force, taking the operator's fields back. Force, and any write at all, only
over objects the resource already controls: an object of the same name that is anyone else's
stops the pass before its first write and the resource goes ``Degraded``
(:func:`~kaip.kube.operator.owned.refusal_for`), not retried until the resource changes.

kopf is not imported here: :mod:`.handlers` only decides when to call this.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

import yaml

from kaip.accounting import PriceBook, Prices
from kaip.accounting.prices import INSTANCE_TYPE_LABEL
from kaip.analysis import StepContext, run_checks, run_hooks
from kaip.errors import (
    ConfigError,
    ForeignObjectError,
    KaipError,
    KubeError,
    KubeForbiddenError,
    SpecError,
)
from kaip.kube.client import Manifest, ObjectRef, Session, apply
from kaip.kube.client.apply import Identity
from kaip.kube.operator import artifact_pins, notices, observe
from kaip.kube.operator.canary import (
    Command,
    Decision,
    Progress,
    RolloutState,
    Served,
    progress,
)
from kaip.kube.operator.conditions import DEGRADED, READY, find, rfc3339
from kaip.kube.operator.job_report import job_report
from kaip.kube.operator.metrics import MetricsSource
from kaip.kube.operator.owned import FOREIGN, Ledger, Verdict, foreign_fault, refusal_for
from kaip.kube.operator.status import Fault, JobState, Observation, compute
from kaip.kube.operator.versions import ClusterVersions, lineage
from kaip.plan import Plan, Workload, plan_workload, revision_id
from kaip.policy import CheckResult
from kaip.render.kube import Backend, render_manifests
from kaip.render.kube.training import JOBSET_API, uses_jobset
from kaip.settings import Settings
from kaip.spec import API_VERSION, KINDS, App, Model, Resource, TrainingJob, load_text
from kaip.spec.kinds import registry_reference
from kaip.spec.rollout import Analysis, HookType

log = logging.getLogger("kaip.operator")

COMPONENT: Final = "kaip-operator"
MODEL_PORT: Final = 8000
_SKIPPED_ANNOTATIONS: Final = ("kubectl.kubernetes.io/", "kaip.dev/", "kopf.zalando.org/")


@dataclass(frozen=True)
class Outcome:
    """What a pass did: the status it wrote and whether the resource still needs attention."""

    status: Mapping[str, Any]
    decisions: tuple[Decision, ...] = ()
    fault: Fault | None = None
    settled: bool = False
    """True when nothing is left to wait for (ready and no canary, or a permanent fault)."""
    registered: str | None = None
    """The model name a TrainingJob registered a version of in this pass (Models follow it)."""


def user_annotations(meta: Mapping[str, Any]) -> dict[str, str]:
    """The annotations a user set (rendered onto the objects); kubectl's and kaip's own left out."""
    return {
        k: str(v)
        for k, v in (meta.get("annotations") or {}).items()
        if not k.startswith(_SKIPPED_ANNOTATIONS)
    }


def parse(body: Mapping[str, Any]) -> Resource:
    """The custom resource as a validated :mod:`kaip.spec` resource; SpecError if invalid."""
    meta = body.get("metadata") or {}
    doc = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "labels": dict(meta.get("labels") or {}),
            "annotations": user_annotations(meta),
        },
        "spec": body.get("spec") or {},
    }
    where = f"{body.get('kind')} {meta.get('namespace')}/{meta.get('name')}"
    return load_text(yaml.safe_dump(doc, sort_keys=False), where).documents[0].resource


def spec_problems(exc: SpecError) -> str:
    """The spec's problems without the synthetic file positions: ``path: message (hint)``."""
    parts = []
    for problem in exc.problems:
        where = f"{problem.path}: " if problem.path else ""
        hint = f" ({problem.hint})" if problem.hint else ""
        parts.append(f"{where}{problem.message}{hint}")
    return "; ".join(parts)


def merge_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 JSON merge patch that turns ``before`` into ``after`` (removals as null)."""
    patch: dict[str, Any] = {}
    for key in before.keys() - after.keys():
        patch[key] = None
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            nested = merge_patch(old, value)
            if nested:
                patch[key] = nested
        elif old != value or key not in before:
            patch[key] = value
    return patch


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": body["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _owned(manifest: Manifest, owner: Mapping[str, Any]) -> Manifest:
    metadata = dict(manifest["metadata"])
    metadata["ownerReferences"] = [dict(owner)]
    return {**manifest, "metadata": metadata}


def _now() -> datetime:
    return datetime.now(UTC)


def prices_of(book: PriceBook, resource: Model | App) -> Prices:
    """The prices of a resource's replicas: its owner's, on the node type its ``nodeSelector``
    names (:data:`kaip.accounting.prices.INSTANCE_TYPE_LABEL`), over the defaults."""
    return book.resolve(resource.spec.owner, resource.spec.node_selector.get(INSTANCE_TYPE_LABEL))


@dataclass
class Reconciler:
    """Everything a pass needs, shared by every resource the operator watches."""

    session: Session
    settings: Settings
    metrics: MetricsSource
    clock: Callable[[], datetime] = field(default=_now)
    notify: notices.Send | None = None
    """Where rollout notifications go (a :class:`kaip.notify.BackgroundNotifier`'s send)."""
    tell: notices.Tell | None = field(default_factory=lambda: _tell_in_background)
    """How post-rollout webhooks are told the outcome (default: on a thread, never waited for)."""
    instance: str = field(default_factory=socket.gethostname)
    prices: PriceBook = field(default_factory=PriceBook)
    """Prices per owner and node type (``KAIP_COST_PRICES_FILE``) for the cost gate."""
    _applied: dict[str, str] = field(default_factory=dict, repr=False)
    """uid -> digest of the manifests last applied for it. Only saves requests: after a restart
    everything is applied once more; nothing about a rollout is kept here."""
    _ours: dict[str, set[Identity]] = field(default_factory=dict, repr=False)
    """uid -> the objects its last apply wrote (so they carry its owner reference): the ones a
    later apply need not read to know it may write over them. Forgotten on any drift."""
    _ledger: Ledger = field(init=False, repr=False)
    versions: ClusterVersions = field(init=False, repr=False)
    """The registry TrainingJobs register into and Models read versions from."""

    def __post_init__(self) -> None:
        self._ledger = Ledger(self.settings.kube.field_manager)
        self.versions = ClusterVersions(self.settings)

    def forget(self, uid: str) -> None:
        """Drop what is cached about a deleted resource."""
        self._applied.pop(uid, None)
        self._ours.pop(uid, None)
        self._ledger.forget(uid)

    def stale(self, owner_uid: str, kind: str, obj: Mapping[str, Any]) -> bool:
        """Whether a watch event on ``obj`` is no newer than what the last apply or pass saw
        (no lock needed: see :meth:`~kaip.kube.operator.owned.Ledger.stale`)."""
        return self._ledger.stale(owner_uid, kind, obj)

    def concerns(self, owner_uid: str, kind: str, obj: Mapping[str, Any], deleted: bool) -> Verdict:
        """What a watch event on ``kind`` ``obj``, owned by ``owner_uid``, calls for.

        On ``DRIFT`` the next pass applies again (the digest is forgotten). Call under the same
        lock as :meth:`reconcile` for that owner, so a pass in flight has recorded its apply.
        """
        verdict = self._ledger.verdict(owner_uid, kind, obj, deleted=deleted)
        if verdict is Verdict.DRIFT:
            self._applied.pop(owner_uid, None)
            self._ours.pop(owner_uid, None)  # deleted, perhaps created again by someone else
        return verdict

    def path(self, kind: str, namespace: str, name: str | None = None) -> str:
        resource = self.session.resource(API_VERSION, kind)
        if resource is None:
            raise KubeError(f"the cluster does not serve {kind} in {API_VERSION}: install the CRDs")
        return resource.path(namespace, name)

    def reconcile(self, kind: str, namespace: str, name: str) -> Outcome | None:
        """One pass over ``kind`` ``namespace/name``; None when it no longer exists.

        Every problem is reported in the status and as ``Outcome.fault``: permanent ones (an
        invalid spec, an RBAC denial) wait for a change, temporary ones are for the caller to
        retry. Raises KubeError only when the resource or its status cannot be read or written.
        """
        path = self.path(kind, namespace, name)
        body = self.session.get(path, what=f"read {kind} {namespace}/{name}", missing_ok=True)
        if body is None:
            return None
        previous: Mapping[str, Any] = body.get("status") or {}
        generation = int(body["metadata"].get("generation", 1))
        now = self.clock()
        try:
            resource = parse(body)
            seen, decisions = self._converge(body, resource, previous, now)
        except SpecError as exc:
            fault = Fault("InvalidSpec", spec_problems(exc), permanent=True)
            seen, decisions = Observation(kind, generation, fault=fault), []
        except ConfigError as exc:
            fault = Fault("InvalidSpec", exc.message, permanent=True)
            seen, decisions = Observation(kind, generation, fault=fault), []
        except KubeForbiddenError as exc:
            fault = Fault("Forbidden", exc.message, permanent=True)
            seen, decisions = Observation(kind, generation, fault=fault), []
        except ForeignObjectError as exc:
            fault = foreign_fault(kind, name, str(body["metadata"]["uid"]), exc.objects)
            seen, decisions = Observation(kind, generation, fault=fault), []
        except KubeError as exc:  # retried by the caller; say so in the status meanwhile
            fault = Fault("Retrying", exc.message, permanent=False)
            seen, decisions = Observation(kind, generation, fault=fault), []
        except KaipError as exc:  # the model registry or object store: retried as well
            fault = Fault("Retrying", exc.message, permanent=False)
            seen, decisions = Observation(kind, generation, fault=fault), []
        status = compute(seen, previous, now)
        if seen.fault is not None and "rollout" in previous:
            status["rollout"] = previous["rollout"]  # a bad spec must not lose the canary's state
        patch = merge_patch(previous, status)
        if patch:
            self.session.request(
                "PATCH",
                f"{path}/status",
                body={"status": patch},
                content_type="application/merge-patch+json",
                what=f"write the status of {kind} {namespace}/{name}",
            )
        for decision in decisions:
            self._event(body, decision, now)
        if decisions and isinstance(resource, Model | App):
            notices.announce(self.notify, resource, decisions, namespace, previous)
            notices.post_rollout(self.tell, resource, decisions, namespace, previous)
        registered = next((d.evidence["model"] for d in decisions if d.action == "register"), None)
        return Outcome(
            status, tuple(decisions), seen.fault, settled=_settled(status), registered=registered
        )

    # -- one pass --------------------------------------------------------------------------

    def _converge(
        self,
        body: Mapping[str, Any],
        resource: Resource,
        previous: Mapping[str, Any],
        now: datetime,
    ) -> tuple[Observation, list[Decision]]:
        meta = body["metadata"]
        namespace, name, uid = str(meta["namespace"]), str(meta["name"]), str(meta["uid"])
        generation = int(meta.get("generation", 1))
        workload = plan_workload(resource, self.settings, namespace)
        if isinstance(resource, TrainingJob):
            self._apply(body, Plan((workload,), self.settings), None, previous, generation)
            if uses_jobset(resource, self.settings):
                obj = self._read(uid, JOBSET_API, "JobSet", namespace, workload.revision_name)
                job = observe.jobset_state(obj, resource.spec.nodes)
            else:
                obj = self._read(uid, "batch/v1", "Job", namespace, workload.revision_name)
                job = observe.job_state(obj, resource.spec.nodes)
            return self._output(resource, job, workload, previous, generation, now)
        assert isinstance(resource, Model | App)
        state = RolloutState.from_status(previous.get("rollout"))
        follows: dict[str, Any] = {}
        refusals: list[Decision] = []
        if isinstance(resource, Model):
            reference = registry_reference(resource.spec.artifact.uri)
            if reference is not None and not reference[1].isdigit():
                follows["follows"] = resource.spec.artifact.uri
            changed = generation != previous.get("observedGeneration")
            stable_spec = state.stable_spec if state is not None else None
            pinned = self.versions.pin(resource, stable_spec, changed)
            resource = pinned.model
            workload = plan_workload(resource, self.settings, namespace)
            if pinned.refused is not None:
                follows["refused"] = pinned.refused
                refusals = _refusal(pinned.refused, previous)
        genai = resource.spec.rollout.gates.judges_genai
        moved = progress(
            state,
            resource,
            now,
            lambda revision, window: self.metrics.revision_metrics(
                namespace, name, revision, window, genai=genai
            ),
            Command.from_annotations(meta.get("annotations")),
            analyze=lambda analysis, step: asyncio.run(run_checks(analysis, step)),
            namespace=namespace,
            hooks=_call_hooks,
            canary_ready=_canary_ready(state, previous),
            prices=prices_of(self.prices, resource),
        )
        backends = self._backends(resource, workload, moved)
        sources = {b.workload.revision: self._source(b.workload) for b in backends}
        backends, artifact_changed = artifact_pins.pin_backends(
            [replace(b, workload=self._fetchable(b.workload)) for b in backends],
            previous,
            lambda live: observe.pods(self.session, live.namespace, live.revision_selector),
        )
        plan = Plan((self._fetchable(workload),), self.settings)
        self._apply(body, plan, backends, previous, generation)
        revisions = tuple(
            replace(
                observe.revision_state(
                    self._read(uid, "apps/v1", "Deployment", namespace, b.workload.revision_name),
                    b.workload.revision,
                    b.weight,
                ),
                source=sources[b.workload.revision],
                digest=artifact_pins.served_digest(b.workload),
            )
            for b in backends
        )
        if any(r.missing for r in revisions):  # deleted behind our back: apply again next time
            self._applied.pop(uid, None)
            self._ours.pop(uid, None)
        decisions = [d for d in [moved.decision] if d is not None and d.action != "hold"]
        decisions += refusals
        rollout_status = moved.state.to_status()
        if moved.decision is not None:
            rollout_status["lastDecision"] = moved.decision.to_status(now)
        elif isinstance(previous.get("rollout"), Mapping) and "lastDecision" in previous["rollout"]:
            rollout_status["lastDecision"] = previous["rollout"]["lastDecision"]
        seen = Observation(
            resource.kind,
            generation,
            revisions=revisions,
            url=_url(resource, namespace),
            canary=moved.summary,
            rolled_back=_rolled_back(moved, resource),
            artifact_changed=artifact_changed,
            extra={"rollout": rollout_status, **_served_names(resource), **follows},
        )
        return seen, decisions

    def _output(
        self,
        job: TrainingJob,
        state: JobState,
        workload: Workload,
        previous: Mapping[str, Any],
        generation: int,
        now: datetime,
    ) -> tuple[Observation, list[Decision]]:
        """The TrainingJob's observation, its Job's output registered once the Job succeeded,
        with the metrics its pod reported (:mod:`.job_report`).

        A registry or object store that fails is retried (the Job's own state is unchanged);
        an output kaip cannot register on a cluster is a ConfigError (InvalidSpec). A job that
        reported no metrics still registers its version; ``status.output.problem`` and the
        Event say what is missing, and a quality gate refuses the version.
        """
        run = workload.revision_name
        output = previous.get("output")
        known = isinstance(output, Mapping) and job.spec.output is not None
        last = {"output": output} if known else {}
        done = known and isinstance(output, Mapping) and output.get("run") == run
        if not state.complete or job.spec.output is None or done:
            # The last version registered stays in the status while the next Job runs.
            return Observation(job.kind, generation, job=state, extra=last), []
        pods = observe.pods(self.session, workload.namespace, workload.revision_selector)
        reported = job_report(run, pods)
        try:
            version = self.versions.register_output(job, run, reported.report)
        except ConfigError:
            raise
        except KaipError as exc:
            fault = Fault("Retrying", f"the Job {run} succeeded; registering its output: "
                          f"{exc.message}", permanent=False)  # fmt: skip
            return Observation(job.kind, generation, job=state, fault=fault), []
        registered = {
            **lineage(version),
            "uri": job.spec.output.uri,
            "registeredAt": rfc3339(now),
            "metrics": dict(version.metrics),
        }
        said = ", ".join(f"{k} {v:g}" for k, v in sorted(version.metrics.items()))
        what = f"registered {version.describe()}, " + (
            f"metrics: {said}" if said else "without metrics"
        )
        if reported.problem is not None:
            registered["problem"] = reported.problem[:1024]
            what += f": {reported.problem}"
        decision = Decision(
            "register",
            what,
            run,
            {"model": version.name, "version": version.reference, "digest": version.digest},
        )
        extra = {"output": registered}
        return Observation(job.kind, generation, job=state, extra=extra), [decision]

    def _source(self, workload: Workload) -> dict[str, Any] | None:
        if not isinstance(workload.resource, Model):
            return None
        version = self.versions.pinned(workload.resource)
        return None if version is None else lineage(version)

    def _fetchable(self, workload: Workload) -> Workload:
        """``workload`` as its pods read it: a pinned version's source in its spec."""
        if not isinstance(workload.resource, Model):
            return workload
        return replace(workload, resource=self.versions.fetchable(workload.resource))

    def _read(self, uid: str, api_version: str, kind: str, namespace: str, name: str) -> Manifest:
        obj = observe.read(self.session, api_version, kind, namespace, name)
        self._ledger.observed(uid, kind, name, obj)
        return obj

    def _backends(self, desired: Served, workload: Workload, moved: Progress) -> list[Backend]:
        namespace = workload.namespace
        stable = workload
        if moved.state.stable_revision != workload.revision:
            stable_resource = KINDS[desired.kind].model_validate(
                {
                    "apiVersion": API_VERSION,
                    "kind": desired.kind,
                    "metadata": desired.metadata.model_dump(by_alias=True, exclude_none=True),
                    "spec": dict(moved.state.stable_spec),
                }
            )
            stable = plan_workload(stable_resource, self.settings, namespace)
        backends = []
        for role, weight in moved.live:
            backends.append(Backend(stable if role == "stable" else workload, weight))
        return backends

    def _apply(
        self,
        body: Mapping[str, Any],
        plan: Plan,
        backends: list[Backend] | None,
        previous: Mapping[str, Any],
        generation: int,
    ) -> None:
        workload = plan.workloads[0]
        traffic = None if backends is None else {workload.key: backends}
        owner = owner_reference(body)
        manifests = [_owned(m, owner) for m in render_manifests(plan, traffic)]
        uid = str(owner["uid"])
        digest = hashlib.sha256(json.dumps(manifests, sort_keys=True).encode()).hexdigest()
        if self._applied.get(uid) == digest:
            return  # applied as rendered already; a timer tick only looks
        manifests = [self._fit_live_job(m, workload.namespace) for m in manifests]
        part_of = workload.name
        result = apply(
            self.session,
            manifests,
            part_of=part_of,
            namespace=workload.namespace,
            force_conflicts=True,  # only over objects refusal_for let through: its own
            field_manager=self.settings.kube.field_manager,
            report=False,
            refuse=refusal_for(uid),
            known=self._ours.get(uid, set()),
        )
        self._ours[uid] = {c.ref.identity for c in result.changes}
        self._ledger.applied(uid, [c.live for c in result.changes if c.live is not None])
        live = {b.workload.revision for b in backends or []}
        was_live = {str(r.get("name")) for r in previous.get("revisions") or []}
        # Never reconciled and never changed (generation 1): nothing it owns can be stale, not
        # even after a pass that applied and died before writing the status -- it rendered the
        # same. That saves a list per owned kind for every new resource.
        first = not previous and generation == 1
        if not first and (generation != previous.get("observedGeneration") or live != was_live):
            keep = [
                ObjectRef(
                    str(m["apiVersion"]), str(m["kind"]), m["metadata"]["name"], workload.namespace
                )
                for m in manifests
            ]
            stale = observe.leftovers(
                self.session, workload.namespace, part_of, str(owner["uid"]), keep
            )
            observe.delete_objects(self.session, stale)
        self._applied[uid] = digest

    def _fit_live_job(self, manifest: Manifest, namespace: str) -> Manifest:
        """``manifest`` made fit for the Job the cluster already runs under its name, if any.

        * A Job's pod template is immutable: a label or annotation added to a TrainingJob (which
          does not make a new revision, so not a new Job) would be refused. The live template is
          applied again as it is; the Job object's own labels and annotations still change.
        * A JobSet's replicated Jobs are immutable in the same way, and kept the same way.
        * A Job for Kueue is created suspended; Kueue admits it by setting ``suspend: false``,
          which makes Kueue that field's manager. Applying ``suspend: true`` again with force
          (after an operator restart, or to put back drift) would stop an admitted Job, so the
          field is left out then -- safe because the operator no longer manages it.
        """
        kind = manifest["kind"]
        if kind not in ("Job", "JobSet"):
            return manifest
        name = str(manifest["metadata"]["name"])
        live = observe.read(self.session, str(manifest["apiVersion"]), kind, namespace, name)
        live_spec = live.get("spec") or {}
        fixed = "template" if kind == "Job" else "replicatedJobs"  # immutable once created
        if not live or fixed not in live_spec:
            return manifest
        spec = {**(manifest.get("spec") or {}), fixed: live_spec[fixed]}
        if spec.get("suspend") and not live_spec.get("suspend", False):
            del spec["suspend"]
        return {**manifest, "spec": spec}

    def _event(self, body: Mapping[str, Any], decision: Decision, now: datetime) -> None:
        meta = body["metadata"]
        stamp = rfc3339(now)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": body["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "reason": decision.event_reason,
            "message": f"revision {decision.revision}: {decision.reason}"[:1024],
            "type": "Warning" if decision.warning else "Normal",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance[:128],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        self.session.request(
            "POST",
            f"/api/v1/namespaces/{meta['namespace']}/events",
            body=event,
            what=f"record an event for {body['kind']} {meta['namespace']}/{meta['name']}",
        )


def _refusal(refused: Mapping[str, str], previous: Mapping[str, Any]) -> list[Decision]:
    """An Event for a version the quality gate refused, once (not again at every pass)."""
    before = previous.get("refused")
    if isinstance(before, Mapping) and before.get("version") == refused["version"]:
        return []
    reason = f"refused by the quality gate: {refused['reason']}; the stable revision stays"
    return [Decision("refuse", reason, refused["version"], dict(refused))]


def _served_names(resource: Served) -> dict[str, Any]:
    return {"servedNames": list(resource.served_names)} if isinstance(resource, Model) else {}


def _url(resource: Served, namespace: str) -> str:
    port = resource.spec.port if isinstance(resource, App) else MODEL_PORT
    return f"http://{resource.metadata.name}.{namespace}.svc:{port}"


def _rolled_back(moved: Progress, desired: Served) -> str | None:
    state = moved.state
    if state.rolled_back is None or state.canary is not None:
        return None
    if state.rolled_back != state.stable_revision and state.rolled_back == revision_id(desired):
        return f"revision {state.rolled_back} rolled back: {state.rolled_back_reason}"
    return None


def _settled(status: Mapping[str, Any]) -> bool:
    conditions = status.get("conditions") or []
    degraded = find(conditions, DEGRADED)
    if degraded is not None and degraded.get("status") == "True":
        permanent = ("InvalidSpec", "Forbidden", FOREIGN, "RolledBack", "JobFailed")
        return degraded.get("reason") in permanent
    ready = find(conditions, READY)
    rollout = status.get("rollout") or {}
    return ready is not None and ready.get("status") == "True" and not rollout.get("canary")


def needs_attention(body: Mapping[str, Any]) -> bool:
    """Whether a resource, as last seen, still has something to wait for."""
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    if status.get("observedGeneration") != generation:
        return True
    return not _settled(status)


PROGRESS: Final = "progress"
RESYNC: Final = "resync"


def pace(body: Mapping[str, Any]) -> str | None:
    """When a resource, as last seen, is to be looked at again without a change.

    ``PROGRESS`` (every ``--interval``) while a canary runs, whose steps are timed, or while a
    temporary fault is retried; ``RESYNC`` (every ``--resync``, a safety net) while it waits only
    for its workloads, whose watch events drive the passes; None once settled.
    """
    status = body.get("status") or {}
    if not needs_attention(body):
        # A Model that follows a registry selector looks again now and then (a version
        # registered outside the cluster, an alias moved): the operator's own registrations
        # wake it at once.
        return RESYNC if status.get("follows") else None
    rollout = status.get("rollout")
    if isinstance(rollout, Mapping) and rollout.get("canary"):
        return PROGRESS
    if any(c.get("reason") == "Retrying" for c in status.get("conditions") or []):
        return PROGRESS
    return RESYNC


def _call_hooks(
    analysis: Analysis, phase: HookType, context: StepContext
) -> tuple[CheckResult, ...]:
    return asyncio.run(run_hooks(analysis, phase, context))


def _tell_in_background(analysis: Analysis, context: StepContext) -> None:
    """Call the post-rollout webhooks on a thread of their own and log their answers."""

    def tell() -> None:
        for result in _call_hooks(analysis, "post-rollout", context):
            log.info("%s %s: post-rollout %s", context.kind, context.name, result.describe())

    threading.Thread(target=tell, name="kaip-post-rollout", daemon=True).start()


def _canary_ready(state: RolloutState | None, previous: Mapping[str, Any]) -> bool:
    """Whether the canary's pods were all ready at the last look (``status.revisions``)."""
    if state is None or state.canary is None:
        return False
    for seen in previous.get("revisions") or []:
        if isinstance(seen, Mapping) and seen.get("name") == state.canary.revision:
            wanted, ready = seen.get("replicas"), seen.get("readyReplicas")
            return isinstance(wanted, int) and isinstance(ready, int) and ready >= max(wanted, 1)
    return False

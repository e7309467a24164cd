"""Pin on first sight: the artifact digest a revision's pods report, and the rule for later pods.

A Model whose artifact is remote (``http(s)://``, ``s3://``) and pinned by no ``sha256`` can
reach the cluster without ``kaip apply`` pinning it (GitOps, ``kubectl apply``): its revision id
is then a hash of the spec alone. Its pods' init container reports the sha256 it fetched as its
termination message (:mod:`kaip.serving.fetch`), and the rule is:

* the revision is pinned to the **first digest seen**: the one its oldest reporting pod fetched
  (``status.revisions[].digest`` keeps it), and from then on the operator renders the
  revision's fetch with ``--sha256 DIGEST``, so every later pod verifies those bytes;
* a pod whose bytes differ is never served silently: after the pin its fetch fails, naming the
  expected and the found digest (the pod does not start, the revision's other pods keep
  serving); a pod that fetched other bytes before the pin reached it is replaced by the
  Deployment's rollout of the pinned template. Either way the Model goes ``Degraded`` with
  reason ``ArtifactChanged`` and both digests, until no such pod is left;
* new bytes become a new revision only the normal way: ``kaip apply`` / ``kaip deploy`` (which
  pin at deploy time) or ``artifact.sha256`` in the spec, and then go through the rollout.

A spec that pins ``sha256`` needs none of this: its digest is the spec's. Pure: the pods come
from the caller (:func:`pin_backends`'s ``list_pods``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from kaip.plan import Workload
from kaip.render.kube import Backend
from kaip.render.kube.artifacts import FETCH_CONTAINER, REMOTE_SCHEMES
from kaip.spec import Model, Resource

MAX_MESSAGE_CHARS: Final = 4096
"""What the kubelet keeps of a termination message; anything longer is not a fetch's report."""
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FetchReport:
    """What one pod's ``fetch-artifact`` init container said when it last finished."""

    pod: str
    created: str = ""
    sha256: str | None = None
    """The digest it fetched and verified (a successful fetch)."""
    expected: str | None = None
    found: str | None = None
    """A fetch refused for bytes other than the pinned ones: the pin, and what it found."""

    @property
    def fetched(self) -> str | None:
        return self.sha256 or self.found


@dataclass(frozen=True)
class Pin:
    """A revision's artifact digest and, if a pod fetched other bytes, what to tell people."""

    digest: str | None
    changed: str | None = None


def needs_pin(resource: Resource) -> bool:
    """Whether ``resource`` is a Model with a remote artifact that its spec does not pin."""
    if not isinstance(resource, Model):
        return False
    artifact = resource.spec.artifact
    return artifact.sha256 is None and artifact.uri.startswith(REMOTE_SCHEMES)


def as_digest(value: Any) -> str | None:
    """``value`` if it is a sha256 in hex, else None."""
    return value if isinstance(value, str) and _SHA256.fullmatch(value) else None


def _message(terminated: Mapping[str, Any]) -> Mapping[str, Any]:
    text = terminated.get("message")
    if not isinstance(text, str) or not text or len(text) > MAX_MESSAGE_CHARS:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, Mapping) else {}


def fetch_report(pod: Mapping[str, Any]) -> FetchReport | None:
    """The report of ``pod``'s fetch (its current run, else the one before); None if none."""
    meta = pod.get("metadata") or {}
    name, created = str(meta.get("name", "")), str(meta.get("creationTimestamp", ""))
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if not isinstance(status, Mapping) or status.get("name") != FETCH_CONTAINER:
            continue
        for state in (status.get("state"), status.get("lastState")):
            terminated = (state or {}).get("terminated") if isinstance(state, Mapping) else None
            if not isinstance(terminated, Mapping):
                continue
            said = _message(terminated)
            if terminated.get("exitCode") == 0:
                digest = as_digest(said.get("sha256"))
                if digest is not None:
                    return FetchReport(name, created, sha256=digest)
                continue
            expected, found = as_digest(said.get("expected")), as_digest(said.get("found"))
            if expected is not None and found is not None:
                return FetchReport(name, created, expected=expected, found=found)
    return None


def pin(recorded: str | None, reports: Iterable[FetchReport], revision: str, uri: str) -> Pin:
    """Revision ``revision``'s digest: ``recorded`` (its pin so far) or else the first one its
    pods reported (oldest pod first); with a message when a pod fetched other bytes."""
    ordered = sorted(reports, key=lambda r: (r.created, r.pod))
    digest = recorded or next((r.sha256 for r in ordered if r.sha256), None)
    if digest is None:
        digest = next((r.expected for r in ordered if r.expected), None)
    if digest is None:
        return Pin(None)
    for report in ordered:
        found = report.fetched
        if found is None or found == digest:
            continue
        what = (
            "its fetch refused them"
            if report.found is not None
            else "it is replaced by a pod that verifies the pin"
        )
        return Pin(
            digest,
            f"revision {revision}: pod {report.pod} fetched {uri} with sha256 {found}, but the "
            f"revision is pinned to sha256 {digest}, what its first pod fetched ({what}): new "
            "bytes at the same URI are not served under an old revision. Roll them out as a new "
            "revision: kaip apply or kaip deploy pins them, or set artifact.sha256 in the spec",
        )
    return Pin(digest)


def served_digest(workload: Workload) -> str | None:
    """The sha256 of what a revision's pods serve: the spec's pin, or the one on first sight."""
    resource = workload.resource
    if isinstance(resource, Model) and resource.spec.artifact.sha256 is not None:
        return resource.spec.artifact.sha256
    return workload.artifact_sha256


def pin_backends(
    backends: Sequence[Backend],
    previous: Mapping[str, Any],
    list_pods: Callable[[Workload], Sequence[Mapping[str, Any]]],
) -> tuple[list[Backend], str | None]:
    """``backends`` with each unpinned remote artifact pinned (its digest in
    ``previous``'s ``revisions[]``, else the first one its pods reported), and what to say if a
    pod fetched other bytes.

    Each pass lists the pods of each such revision once (a pod that restarts with other bytes
    shows up at the pass its Deployment's readiness change starts); a revision whose spec pins
    its artifact, or whose artifact is not remote, costs no request. A settled Model has no
    passes, so it costs nothing.
    """
    seen = {
        str(r.get("name")): r for r in previous.get("revisions") or [] if isinstance(r, Mapping)
    }
    pinned: list[Backend] = []
    changed: str | None = None
    for backend in backends:
        live = backend.workload
        resource = live.resource
        if not needs_pin(resource):
            pinned.append(backend)
            continue
        assert isinstance(resource, Model)
        recorded = as_digest((seen.get(live.revision) or {}).get("digest"))
        reports = [r for p in list_pods(live) if (r := fetch_report(p)) is not None]
        found = pin(recorded, reports, live.revision, resource.spec.artifact.uri)
        if found.digest is not None:
            live = replace(live, artifact_sha256=found.digest)
        changed = changed or found.changed
        pinned.append(Backend(live, backend.weight))
    return pinned, changed

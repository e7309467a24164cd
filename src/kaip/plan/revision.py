"""Revision ids: a short, stable digest of what a resource asks for.

A revision id names one version of a resource's ``spec`` on every target: the local platform
labels its replicas with it and Kubernetes objects carry it in ``kaip.dev/revision``. It is the
first 10 hex digits of the SHA-256 of the canonical JSON of the spec (keys sorted, no spaces,
values equal to their default left out), so a spec that only restates a default keeps its
revision, a field added to the spec with a default leaves every existing revision as it was
(an upgraded operator does not roll out what did not change), while any change that reaches
the spec makes a new one. ``metadata`` (labels, annotations) is not part of it.

New weights make a new revision too: the local platform pins a single-file artifact by writing
its sha256 into ``spec.artifact.sha256`` before the revision id is taken, and for a directory
artifact passes the digest of its tree as ``artifact_digest``, which is hashed along with the
spec. A spec that pins ``sha256`` itself already carries its artifact's identity.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

from kaip.spec import Resource

REVISION_LENGTH: Final = 10


def canonical_spec_json(resource: Resource) -> str:
    """The resource's ``spec`` as canonical JSON: sorted keys, no whitespace, UTF-8 as is."""
    spec = resource.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def revision_id(resource: Resource, artifact_digest: str | None = None) -> str:
    """The revision id of a resource: 10 lower-case hex digits, stable across runs and hosts.

    ``artifact_digest`` (the content digest of an artifact the spec does not pin) is part of the
    identity when given, so the same spec with other weights is another revision.
    """
    text = canonical_spec_json(resource)
    if artifact_digest is not None:
        text += "\nartifact:" + artifact_digest
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return digest[:REVISION_LENGTH]

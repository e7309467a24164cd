"""What makes a new revision locally: the spec, and the bytes of the model's artifact.

At ``kaip up`` and ``kaip deploy`` every Model whose artifact is on this machine (a relative
path, an absolute path or ``file://``) is pinned before its revision id is taken:

* a **single file** without ``sha256`` gets ``sha256: <digest of the file>`` written into the
  revision's spec. Overwritten weights therefore change the spec, make a new revision and go
  through the rollout; and a replica of the old revision that restarts later refuses the new
  file (the model server verifies the digest) instead of serving it under the old revision.
* a **single file with** ``sha256`` is checked against it now, so a mismatch is refused at
  deploy time with both digests rather than as replicas that cannot start.
* a **directory** (sha256 pins single files only) is summarised by the digest of its tree
  (:func:`kaip.serving.artifacts.content_digest`), which becomes part of the revision id.

A pinned single file is also **kept**: a copy under its sha256 in the artifact cache (once per
digest, :func:`kaip.serving.artifacts.keep_copy`), where a replica finds those bytes when the
file at the path has been overwritten since, so ``kaip rollout undo`` to the revision before a
retraining serves the old weights instead of refusing the new file. A directory is not kept
(its old tree cannot be served once it changed; undo says so).

A **remote artifact** (``http(s)://``, ``s3://``) without ``sha256`` is downloaded now into the
artifact cache and pinned the same way (:func:`kaip.serving.artifacts.pin_model`): the digest
goes into the revision's spec, the replicas find those bytes in the cache and verify them, and
new bytes at the URL make a new revision at the next deploy. Apps have no artifact; their
revision follows the spec. Hashing and downloading block: call :func:`pin` off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kaip.errors import ArtifactError, UntrustedArtifactError
from kaip.plan import revision_id
from kaip.serving.artifacts import content_digest, keep_copy, local_path, pin_model, with_sha256
from kaip.serving.download import FetchLimits
from kaip.spec import App, Model


@dataclass(frozen=True)
class Pinned:
    """A resource as it will run, its revision id and the artifact digest in that id."""

    resource: Model | App
    revision: str
    artifact_digest: str | None = None
    """The content digest of the artifact (file or tree), when it is on this machine."""


@dataclass(frozen=True)
class RemotePinning:
    """Where remote artifacts pinned at deploy time are kept (the replicas' artifact cache)."""

    cache_dir: Path
    limits: FetchLimits = field(default_factory=FetchLimits)


def pin(
    resource: Model | App,
    base_dir: Path,
    remote: RemotePinning | None = None,
    *,
    keep: bool = True,
) -> Pinned:
    """Pin ``resource``'s artifact (see the module text) and take its revision id; a remote one
    only with ``remote`` (else its revision follows the spec). With ``remote`` and ``keep``, a
    local single file is kept in its cache (a dry run passes ``keep=False``: it changes nothing).

    A missing local artifact is left to the replica to report (it says where it looked), so a
    deploy that fixes something else is not blocked by it.
    """
    if not isinstance(resource, Model):
        return Pinned(resource, revision_id(resource))
    artifact = resource.spec.artifact
    path = local_path(artifact.uri, base_dir)
    if path is None and remote is not None:
        pinned = pin_model(resource, remote.cache_dir, remote.limits)
        return Pinned(pinned, revision_id(pinned), pinned.spec.artifact.sha256)
    if path is None or not path.exists():
        return Pinned(resource, revision_id(resource))
    try:
        digest = content_digest(path)
    except OSError as exc:
        raise ArtifactError(f"Model {resource.metadata.name}: cannot read {path}: {exc}") from None
    if path.is_dir():
        return Pinned(resource, revision_id(resource, digest), digest)
    if artifact.sha256 is not None and artifact.sha256 != digest:
        raise UntrustedArtifactError(
            f"Model {resource.metadata.name}: {path} has sha256 {digest}, but the spec pins "
            f"{artifact.sha256}: the file changed or is not the one you meant; update "
            "artifact.sha256 only if you trust the new file"
        )
    if remote is not None and keep:
        keep_copy(path, digest, remote.cache_dir, remote.limits)
    if artifact.sha256 is not None:
        return Pinned(resource, revision_id(resource), digest)
    pinned = with_sha256(resource, digest)
    return Pinned(pinned, revision_id(pinned), digest)


__all__ = ["Pinned", "RemotePinning", "pin"]

"""A training run's output as a local file: the one place kaip reads what a job wrote.

``kaip up``/``kaip train`` (:mod:`kaip.local.controller.training`) and the operator
(:mod:`kaip.kube.operator.versions`) both read a job's output through :func:`local_copy` before
registering it: an ``s3://BUCKET/KEY`` object is downloaded once, bounded in size and time and
hashed on the way, exactly as the model server downloads artifacts (:mod:`kaip.serving.s3`); a
local path is used as it is. On a cluster :func:`keep` then stores the bytes that were hashed
at a content-addressed key beside the output (``.../kaip-versions/sha256-DIGEST/NAME``), the
version's source, so a later run writing the same ``output.uri`` never changes a registered
version. Blocking: callers in an event loop run these in a thread. Never registers anything
itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kaip.errors import ArtifactError

if TYPE_CHECKING:  # kaip.serving loads the model server: the CLI imports this module at start
    from kaip.serving.download import FetchLimits

VERSIONS_DIR = "kaip-versions"


def local_copy(location: str, scratch: Path, limits: FetchLimits | None = None) -> Path:
    """The artifact at ``location`` as a local file: an ``s3://`` object downloaded (bounded,
    hashed; default limits: :class:`~kaip.serving.download.FetchLimits`'s) into ``scratch``, a
    path as it is."""
    if not location.startswith("s3://"):
        return Path(location)
    from kaip.serving import s3
    from kaip.serving.download import FetchLimits

    if limits is None:
        limits = FetchLimits()

    _, key = s3.split(location)
    return s3.download(location, scratch / (Path(key).name or "artifact"), limits=limits)[0]


def versioned_uri(location: str, digest: str) -> str:
    """Where :func:`keep` stores the bytes of ``location`` whose sha256 is ``digest``."""
    from kaip.serving import s3

    bucket, key = s3.split(location)
    parent, _, name = key.rpartition("/")
    prefix = f"{parent}/" if parent else ""
    return f"s3://{bucket}/{prefix}{VERSIONS_DIR}/sha256-{digest}/{name}"


def keep(path: Path, location: str, digest: str) -> str:
    """Store ``path`` (the local copy of ``location``, sha256 ``digest``) at its
    content-addressed key beside ``location``; return that key's URI. The same bytes always go
    to the same key, so storing them twice changes nothing."""
    from botocore.exceptions import BotoCoreError, ClientError

    from kaip.serving import s3

    target = versioned_uri(location, digest)
    bucket, key = s3.split(target)
    try:
        s3.client().upload_file(str(path), bucket, key)
    except (BotoCoreError, ClientError) as exc:
        raise ArtifactError(
            f"cannot write {target}, where each registered version's bytes are kept: {exc}; "
            "check that the operator's credentials may s3:PutObject under that prefix"
        ) from None
    return target

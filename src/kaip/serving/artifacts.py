"""Artifact URIs to local paths: relative paths, ``file://``, ``http(s)://`` and ``s3://``.

Owns fetching and verifying model files. A relative path resolves against the directory of the
spec file that names it. ``http(s)`` artifacts are downloaded once (:mod:`.download`, bounded in
size, time and redirects) and ``s3://`` ones with boto3 (:mod:`.s3`, bounded in size and time)
into a cache keyed by their sha256 (or by the URI when no digest is pinned) and verified
before use. :func:`pin_remote` is the deploy-time half: it downloads an unpinned remote artifact
afresh and stores it under its sha256, which the caller writes into the revision's spec, so
replicas verify exactly those bytes. ``gs://`` is not supported and says so; neither is a registry
reference (``registry://``), which ``kaip up`` resolves to a stored file before a replica sees it.
:func:`keep_copy` keeps a pinned local file under its sha256 in the same cache, where
:func:`resolve` serves it from once the file at its path has been overwritten (undo).
:func:`require_pinned` is the load-time gate of code artifacts (pickles, ``format: python``).
Never unpickles or imports anything.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from kaip.errors import ArtifactError, UntrustedArtifactError
from kaip.serving import s3
from kaip.serving.download import FetchLimits, download
from kaip.settings import ServingSettings
from kaip.spec import Artifact, Model
from kaip.spec.advice import REMOTE_SCHEMES

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def fetch_limits(settings: ServingSettings) -> FetchLimits:
    """The download bounds the serving settings ask for."""
    return FetchLimits(
        max_bytes=settings.artifact_max_bytes,
        timeout_seconds=settings.artifact_fetch_timeout_seconds,
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


MAX_TREE_FILES = 100_000
"""The most files :func:`content_digest` hashes in a directory artifact."""


def content_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, or of a directory's tree (for a directory artifact).

    A directory's digest covers every regular file under it (symlinks followed), each as its
    path relative to ``path`` and the digest of its bytes, in sorted order: a changed, added,
    removed or renamed file changes it; timestamps and permissions do not. At most
    :data:`MAX_TREE_FILES` files.
    """
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise ArtifactError(f"artifact not found at {path}")
    files = []
    for number, child in enumerate(sorted(p for p in path.rglob("*") if p.is_file())):
        if number >= MAX_TREE_FILES:
            raise ArtifactError(
                f"{path} holds more than {MAX_TREE_FILES} files: pack the artifact into fewer"
            )
        files.append(child)
    tree = hashlib.sha256(b"kaip-tree-v1\n")
    for child in files:
        relative = child.relative_to(path).as_posix()
        tree.update(f"{sha256_file(child)}  {relative}\n".encode())
    return tree.hexdigest()


def local_path(uri: str, base_dir: Path) -> Path | None:
    """Where a relative, absolute or ``file://`` artifact URI points; None for a remote one."""
    if "://" not in uri:
        return base_dir / uri
    if uri.startswith("file://"):
        parsed = urlparse(uri)
        path = Path(unquote(parsed.netloc + parsed.path))
        return path if path.is_absolute() else base_dir / path
    return None


def verify_digest(path: Path, expected: str) -> None:
    """Raise :class:`UntrustedArtifactError` unless the file at ``path`` hashes to ``expected``."""
    if not path.is_file():
        raise ArtifactError(f"sha256 pins a single file, but {path} is not a file")
    actual = sha256_file(path)
    if actual != expected:
        raise UntrustedArtifactError(
            f"{path} has sha256 {actual}, but the spec pins {expected}: the file changed or is "
            "not the one you meant; update artifact.sha256 only if you trust the new file"
        )


def resolve(
    artifact: Artifact, base_dir: Path, cache_dir: Path, limits: FetchLimits = FetchLimits()
) -> Path:
    """The local path of ``artifact``, downloading it first (within ``limits``) when remote."""
    uri = artifact.uri
    unsupported = _unsupported(uri)
    if unsupported is not None:
        raise unsupported
    local = local_path(uri, base_dir)
    path = local if local is not None else _download(uri, artifact.sha256, cache_dir, limits)
    kept = None if local is None or artifact.sha256 is None else cache_dir / artifact.sha256
    if not path.exists():
        if kept is not None and (kept / path.name).is_file():
            return _kept(kept / path.name, artifact.sha256 or "", path)
        raise ArtifactError(f"artifact {uri!r} not found at {path}")
    if artifact.sha256 is not None:
        try:
            verify_digest(path, artifact.sha256)
        except UntrustedArtifactError:
            if kept is None or not (kept / path.name).is_file():
                raise
            return _kept(kept / path.name, artifact.sha256, path)
    return path


def _kept(copy: Path, digest: str, path: Path) -> Path:
    """The copy of a local file kept when a revision pinned it (:func:`keep_copy`), verified."""
    verify_digest(copy, digest)
    log.info("%s has changed since its sha256 was pinned: serving the copy kept at %s", path, copy)
    return copy


def keep_copy(
    path: Path, digest: str, cache_dir: Path, limits: FetchLimits = FetchLimits()
) -> None:
    """Keep a copy of the local file ``path`` (whose sha256 is ``digest``) in ``cache_dir``
    under its digest, once, where :func:`resolve` finds it for a revision that pinned it after
    the file was overwritten. A file larger than ``limits.max_bytes``, or a cache that cannot be
    written, keeps nothing (said in the log): the revision still runs while the file is as
    pinned."""
    target = cache_dir / digest / path.name
    if target.is_file():
        return
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            log.warning("%s is over %d bytes: no copy kept for undo", path, limits.max_bytes)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".keep-{os.getpid()}-{path.name}"
        try:
            shutil.copyfile(path, staging)
            if sha256_file(staging) == digest:  # else overwritten while copied: keep nothing
                os.replace(staging, target)
        finally:
            staging.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot keep a copy of %s in %s: %s", path, cache_dir, exc)


def pin_remote(uri: str, cache_dir: Path, limits: FetchLimits = FetchLimits()) -> str:
    """Download ``uri`` now (never from the cache: the point is today's bytes) and keep the file
    in ``cache_dir`` under its sha256, where :func:`resolve` finds it for a spec that pins that
    digest without downloading again. Returns the digest."""
    unsupported = _unsupported(uri)
    if unsupported is not None:
        raise unsupported
    name = Path(urlparse(uri).path).name or "artifact"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".pin-"))
    except OSError as exc:
        raise ArtifactError(f"cannot write the artifact cache {cache_dir}: {exc}") from exc
    try:
        fetched = staging / name
        if uri.startswith("s3://"):
            digest = s3.download(uri, fetched, None, limits)[1]
        else:
            digest = sha256_file(download(uri, fetched, None, limits))
        target = cache_dir / digest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(fetched, target)
    except OSError as exc:
        raise ArtifactError(f"cannot write {uri} to the artifact cache {cache_dir}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return digest


def with_sha256(model: Model, digest: str) -> Model:
    """``model`` with ``artifact.sha256: digest`` (a revision's spec pins what it serves)."""
    artifact = model.spec.artifact.model_copy(update={"sha256": digest})
    return model.model_copy(update={"spec": model.spec.model_copy(update={"artifact": artifact})})


def pin_model(model: Model, cache_dir: Path, limits: FetchLimits = FetchLimits()) -> Model:
    """``model`` with an unpinned remote artifact (``http(s)://``, ``s3://``) pinned to the
    sha256 of the bytes at its URI now (:func:`pin_remote`); any other ``model`` as it is.

    ``kaip up``, ``kaip deploy`` and ``kaip apply`` call it, so new bytes at the same URL are a
    new revision that goes through the rollout, never a silent swap on a replica's restart.
    """
    artifact = model.spec.artifact
    if artifact.sha256 is not None or not artifact.uri.startswith(REMOTE_SCHEMES):
        return model
    try:
        digest = pin_remote(artifact.uri, cache_dir, limits)
    except ArtifactError as exc:
        raise type(exc)(
            f"Model {model.metadata.name}: pinning its unpinned artifact at deploy time: "
            f"{exc.message} (or pin artifact.sha256 in the spec yourself)"
        ) from None
    return with_sha256(model, digest)


def _download(url: str, sha256: str | None, cache_dir: Path, limits: FetchLimits) -> Path:
    key = sha256 or hashlib.sha256(url.encode()).hexdigest()
    name = Path(urlparse(url).path).name or "artifact"
    target = cache_dir / key / name
    if target.is_file() and (sha256 is None or sha256_file(target) == sha256):
        return target
    if url.startswith("s3://"):
        return s3.download(url, target, sha256, limits)[0]
    return download(url, target, sha256, limits)


def _unsupported(uri: str) -> ArtifactError | None:
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme == "gs":
        return ArtifactError(
            f"gs:// artifacts are not supported ({uri}): use s3:// against GCS's S3-compatible "
            "endpoint (AWS_ENDPOINT_URL_S3=https://storage.googleapis.com with HMAC keys), or "
            "https:// with a sha256"
        )
    if scheme == "registry":
        return ArtifactError(
            f"{uri} is a reference to kaip's model registry, which the model server does not "
            "read: run it under kaip up, which resolves it to the stored file"
        )
    return None


def require_pinned(artifact: Artifact, path: Path) -> None:
    """Refuse to load a code artifact (a pickle, ``format: python``) that is neither pinned by
    ``sha256`` nor marked ``trust: true``, or that came over plain ``http://`` unpinned.

    The spec's validation says the same; this is the check at the moment code would run, for
    specs that reached the server without it (an old CRD, a hand-built object).
    """
    if not artifact.runs_code or artifact.sha256 is not None:
        return
    what = (
        "is a pickle and unpickling runs code"
        if artifact.is_pickle
        else "is Python code that loading imports and runs"
    )
    if not artifact.trust:
        raise UntrustedArtifactError(
            f"{path} {what}: pin artifact.sha256 (sha256sum {path.name}) or set trust: true"
        )
    if artifact.uri.startswith("http://"):
        raise UntrustedArtifactError(
            f"{path} {what} and came over plain http://, where anyone on the path can swap it: "
            "pin artifact.sha256 (trust: true trusts its author, not the network) or serve it "
            "over https://"
        )

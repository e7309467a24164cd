"""Artifact URIs to local paths: relative paths, ``file://`` and ``http(s)://`` (cached).

Owns fetching and verifying model files. A relative path resolves against the directory of the
spec file that names it. ``http(s)`` artifacts are downloaded once with httpx into a cache keyed
by their sha256 (or by the URL when no digest is pinned) and verified before use. ``s3://`` and
``gs://`` are not supported yet and say so. Never unpickles or imports anything.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from kaip.errors import ArtifactError, UntrustedArtifactError
from kaip.spec import Artifact

_CHUNK = 1 << 20


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


def resolve(artifact: Artifact, base_dir: Path, cache_dir: Path) -> Path:
    """The local path of ``artifact``, downloading it first when it is remote."""
    uri = artifact.uri
    unsupported = _unsupported(uri)
    if unsupported is not None:
        raise unsupported
    local = local_path(uri, base_dir)
    path = local if local is not None else _download(uri, artifact.sha256, cache_dir)
    if not path.exists():
        raise ArtifactError(f"artifact {uri!r} not found at {path}")
    if artifact.sha256 is not None:
        verify_digest(path, artifact.sha256)
    return path


def _download(url: str, sha256: str | None, cache_dir: Path) -> Path:
    key = sha256 or hashlib.sha256(url.encode()).hexdigest()
    name = Path(urlparse(url).path).name or "artifact"
    return download(url, cache_dir / key / name, sha256)


def _unsupported(uri: str) -> ArtifactError | None:
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme in ("s3", "gs"):
        return ArtifactError(
            f"{scheme}:// artifacts are not supported yet ({uri}): copy the file next to the "
            "spec, or serve it over https:// with a sha256"
        )
    return None


def download(url: str, target: Path, sha256: str | None = None) -> Path:
    """Download ``url`` to ``target`` (atomically), verified against ``sha256`` when given.

    An existing ``target`` with the right digest is kept as is.
    """
    unsupported = _unsupported(url)
    if unsupported is not None:
        raise unsupported
    if target.is_file() and (sha256 is None or sha256_file(target) == sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, httpx.stream("GET", url, follow_redirects=True) as resp:
            if resp.status_code != 200:
                raise ArtifactError(f"downloading {url} answered HTTP {resp.status_code}")
            for chunk in resp.iter_bytes(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise UntrustedArtifactError(
                f"{url} has sha256 {digest.hexdigest()}, but the spec pins {sha256}"
            )
        os.replace(tmp, target)
    except httpx.HTTPError as exc:
        raise ArtifactError(f"cannot download {url}: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target

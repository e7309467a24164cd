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
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    unsupported = _unsupported(uri)
    if unsupported is not None:
        raise unsupported
    if scheme in ("http", "https"):
        path = _download(uri, artifact.sha256, cache_dir)
    elif scheme == "file":
        parsed = urlparse(uri)
        path = Path(unquote(parsed.netloc + parsed.path))
        path = path if path.is_absolute() else base_dir / path
    else:
        path = base_dir / uri
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

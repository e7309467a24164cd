"""Downloading one artifact file over ``http(s)``, bounded in size, time and where it may lead.

The rule: a download is one file of at most :attr:`FetchLimits.max_bytes` bytes, finished within
:attr:`FetchLimits.timeout_seconds` in all (redirects and every read included; a read that
stalls longer than what is left, or than :data:`READ_TIMEOUT_SECONDS`, ends it), after at most
:attr:`FetchLimits.max_redirects` redirects. A redirect may go from ``http://`` to ``https://``
but never from ``https://`` down to ``http://`` (anyone on the path could then swap the file)
and never to another scheme. A ``Content-Length`` over the cap is refused before the body is
read; a body that runs past the cap is cut there. The file appears at its target only complete
and, when a digest is pinned, verified (written to a temporary file, then renamed).

Owns the HTTP client for artifacts; never decides where a file goes (:mod:`.artifacts` does)
and never loads what it fetched.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import httpx

from kaip.errors import ArtifactError, UntrustedArtifactError

READ_TIMEOUT_SECONDS: Final = 30.0


@dataclass(frozen=True)
class FetchLimits:
    """Bounds of one artifact download (settings: ``KAIP_SERVING__ARTIFACT_MAX_BYTES``,
    ``KAIP_SERVING__ARTIFACT_FETCH_TIMEOUT_SECONDS``)."""

    max_bytes: int = 32 * 2**30
    timeout_seconds: float = 3600.0
    max_redirects: int = 5


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n} bytes"


class _Deadline:
    def __init__(self, url: str, seconds: float) -> None:
        self.url = url
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left; raises ArtifactError once there are none."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise ArtifactError(
                f"downloading {self.url} took longer than {self.seconds:g}s in all and was "
                "given up (raise KAIP_SERVING__ARTIFACT_FETCH_TIMEOUT_SECONDS for a large file "
                "on a slow link)"
            )
        return left

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(min(self.left(), READ_TIMEOUT_SECONDS))


def _next_hop(url: str, response: httpx.Response) -> str:
    """The URL a redirect points at, if following it is allowed."""
    location = response.headers.get("location")
    if not location:
        raise ArtifactError(f"downloading {url}: HTTP {response.status_code} without a Location")
    target = response.url.join(location)
    if target.scheme not in ("http", "https"):
        raise ArtifactError(
            f"downloading {url}: redirected to {target.scheme}:// ({target}), which is refused: "
            "artifacts come over http(s) only"
        )
    if response.url.scheme == "https" and target.scheme == "http":
        raise ArtifactError(
            f"downloading {url}: redirected from https:// down to plain http:// ({target}), "
            "which is refused (anyone on the path could swap the file): fix the server's "
            "redirect or point artifact.uri at the final https:// URL"
        )
    return str(target)


def download(
    url: str, target: Path, sha256: str | None = None, limits: FetchLimits = FetchLimits()
) -> Path:
    """Download ``url`` to ``target`` (atomically, replacing it), verified against ``sha256``
    when given. Raises :class:`ArtifactError` naming the URL and the limit it broke."""
    deadline = _Deadline(url, limits.timeout_seconds)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    except OSError as exc:
        raise ArtifactError(f"cannot write the artifact cache {target.parent}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as out, httpx.Client(follow_redirects=False) as client:
            digest = _fetch(client, url, out, limits, deadline)
        if sha256 is not None and digest != sha256:
            raise UntrustedArtifactError(f"{url} has sha256 {digest}, but the spec pins {sha256}")
        os.replace(tmp, target)
    except httpx.TimeoutException:
        deadline.left()  # the total limit, if that is what ran out
        raise ArtifactError(
            f"downloading {url}: the server sent nothing for {READ_TIMEOUT_SECONDS:g}s"
        ) from None
    except httpx.HTTPError as exc:
        raise ArtifactError(f"cannot download {url}: {exc}") from exc
    except OSError as exc:
        raise ArtifactError(
            f"cannot write {url} to the artifact cache {target.parent}: {exc}"
        ) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _fetch(
    client: httpx.Client, url: str, out: BinaryIO, limits: FetchLimits, deadline: _Deadline
) -> str:
    """Follow at most ``limits.max_redirects`` redirects, write the body, return its sha256."""
    current = url
    for _hop in range(limits.max_redirects + 1):
        with client.stream("GET", current, timeout=deadline.timeout()) as response:
            if response.is_redirect:
                current = _next_hop(url, response)
                continue
            if response.status_code != 200:
                raise ArtifactError(f"downloading {url} answered HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limits.max_bytes:
                raise ArtifactError(_too_large(url, f"is {_size(int(declared))}", limits))
            digest = hashlib.sha256()
            received = 0
            for chunk in response.iter_bytes():  # as it arrives: the clock is read per piece
                received += len(chunk)
                if received > limits.max_bytes:
                    raise ArtifactError(_too_large(url, "runs past that", limits))
                digest.update(chunk)
                out.write(chunk)
                deadline.left()
            return digest.hexdigest()
    raise ArtifactError(f"downloading {url}: more than {limits.max_redirects} redirects")


def _too_large(url: str, what: str, limits: FetchLimits) -> str:
    return (
        f"downloading {url}: the artifact {what}, more than the limit of "
        f"{_size(limits.max_bytes)} (raise KAIP_SERVING__ARTIFACT_MAX_BYTES if it is meant to "
        "be this big)"
    )

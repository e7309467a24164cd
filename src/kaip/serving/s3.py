"""``s3://BUCKET/KEY`` artifacts: download one object, verified, with errors a person can act on.

Uses boto3 (``pip install 'kaip[s3]'``) with its standard configuration: credentials from the
environment, ``~/.aws`` or an instance role, and an S3-compatible endpoint (MinIO, Ceph, GCS's
XML API with HMAC keys, moto) from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``. Each failure
becomes one :class:`~kaip.errors.ArtifactError` that names the object and what to check: a
missing bucket or key, credentials the server refused, none at all, an endpoint that does not
answer. Objects over the download limit (``KAIP_SERVING__ARTIFACT_MAX_BYTES``) are refused
before any byte is read, and a download past ``KAIP_SERVING__ARTIFACT_FETCH_TIMEOUT_SECONDS`` is
cut. The body is streamed to a temporary file beside the target and hashed on the way; a digest
that differs from the pinned one is an :class:`~kaip.errors.UntrustedArtifactError` and nothing
is kept.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kaip.errors import ArtifactError, UntrustedArtifactError
from kaip.serving.download import FetchLimits

CHUNK = 1 << 20
_MISSING = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_REFUSED = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidToken",
    "ExpiredToken",
}


def split(uri: str) -> tuple[str, str]:
    """``(bucket, key)`` of ``s3://bucket/key``."""
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not bucket or not key:
        raise ArtifactError(f"{uri!r} is not an S3 object URI: write s3://BUCKET/KEY")
    return bucket, key


def client() -> Any:
    """An S3 client configured the standard boto3 way (environment, ~/.aws, roles)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ArtifactError(
            "s3:// artifacts need boto3: pip install 'kaip[s3]' (the kaip image has it)"
        ) from None
    return boto3.client(
        "s3", config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10)
    )


def explain(uri: str, exc: Exception) -> ArtifactError:
    """The one message for an S3 failure, by what the user has to fix."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ArtifactError(
            f"cannot read {uri}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or a role)"
        )
    if isinstance(exc, EndpointConnectionError):
        return ArtifactError(
            f"cannot read {uri}: the S3 endpoint does not answer ({exc}); check "
            "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL and the network"
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _MISSING or status == "404":
            what = "bucket" if code == "NoSuchBucket" else "object"
            return ArtifactError(
                f"cannot read {uri}: no such {what} ({code or status}); check the bucket and "
                "key, and that the job that writes it has run"
            )
        if code in _REFUSED or status == "403":
            return ArtifactError(
                f"cannot read {uri}: the server refused the credentials ({code or status}: "
                f"{error.get('Message', '')}); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                "and that they may s3:GetObject this key"
            )
        return ArtifactError(f"cannot read {uri}: {code or status} {error.get('Message', '')}")
    return ArtifactError(f"cannot read {uri}: {exc}")


def head(uri: str, s3: Any | None = None) -> int:
    """The size of the object at ``uri`` (it exists and is readable), in bytes."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split(uri)
    s3 = s3 or client()
    try:
        answer = s3.head_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as exc:
        raise explain(uri, exc) from None
    return int(answer["ContentLength"])


def download(
    uri: str, target: Path, sha256: str | None = None, limits: FetchLimits = FetchLimits()
) -> tuple[Path, str, int]:
    """Download ``uri`` to ``target`` atomically, within ``limits``; return (path, sha256, size).

    An existing ``target`` with the pinned digest is kept as it is.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    if sha256 is not None and target.is_file() and _sha256(target) == sha256:
        return target, sha256, target.stat().st_size
    bucket, key = split(uri)
    s3 = client()
    size = head(uri, s3)
    if size > limits.max_bytes:
        raise ArtifactError(
            f"{uri} is {size} bytes, more than kaip downloads ({limits.max_bytes}); raise "
            "KAIP_SERVING__ARTIFACT_MAX_BYTES if it is meant to be this large"
        )
    deadline = time.monotonic() + limits.timeout_seconds
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    digest = hashlib.sha256()
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(CHUNK):
                written += len(chunk)
                if written > limits.max_bytes:
                    raise ArtifactError(f"{uri} grew past {limits.max_bytes} bytes while read")
                if time.monotonic() > deadline:
                    raise ArtifactError(
                        f"{uri}: the download took longer than {limits.timeout_seconds:.0f} s; "
                        "raise KAIP_SERVING__ARTIFACT_FETCH_TIMEOUT_SECONDS or check the network"
                    )
                digest.update(chunk)
                out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise UntrustedArtifactError(
                f"{uri} has sha256 {digest.hexdigest()}, but the spec pins {sha256}: the object "
                "changed or is not the one you meant; update artifact.sha256 only if you trust it"
            )
        os.replace(tmp, target)
    except (BotoCoreError, ClientError) as exc:
        raise explain(uri, exc) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target, digest.hexdigest(), written


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

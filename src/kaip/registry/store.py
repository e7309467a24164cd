"""The content-addressed artifact store under ``STATE_DIR/registry/artifacts/``.

An artifact is kept at ``sha256/<digest>/<file name>``: the same bytes registered twice are
stored once, a stored file is never changed (its path names its content), and a reader can
verify what it got. Files are 0600 and directories 0700. Copies stream through a temporary
file in the target directory and are renamed into place, so a crash never leaves half a blob
under its digest. Only single files: a directory must be archived first (the message says so).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from kaip.errors import RegistryError
from kaip.local.private import private_dir

CHUNK = 1 << 20
MAX_ARTIFACT_BYTES = 64 * 2**30
"""The largest artifact the embedded store takes (64 GiB)."""


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str, file_name: str) -> Path:
        return self.root / "sha256" / digest / file_name

    def put(self, source: Path) -> tuple[str, int, Path]:
        """Copy ``source`` in; return its (sha256, size, stored path)."""
        if source.is_dir():
            raise RegistryError(
                f"{source} is a directory: the registry stores single files; archive it "
                "(tar) or write one file"
            )
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise RegistryError(f"cannot read the artifact {source}: {exc.strerror}") from None
        if size > MAX_ARTIFACT_BYTES:
            raise RegistryError(
                f"{source} is {size} bytes, more than the registry takes "
                f"({MAX_ARTIFACT_BYTES}): keep it in object storage (s3://)"
            )
        for parent in reversed(self.root.parents[:2]):
            private_dir(parent)  # STATE_DIR/registry too: nothing in it is for others
        staging = private_dir(private_dir(self.root) / "staging")
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=staging, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            os.chmod(tmp, 0o600)
            hexdigest = digest.hexdigest()
            target = self.path(hexdigest, source.name)
            private_dir(target.parent.parent)
            private_dir(target.parent)
            if target.is_file():
                os.unlink(tmp)
            else:
                os.replace(tmp, target)
        except OSError as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise RegistryError(f"cannot store the artifact {source}: {exc}") from None
        return hexdigest, size, target

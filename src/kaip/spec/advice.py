"""Advice on valid specs: things that work but that a person should know about (pure).

:func:`advice` looks at loaded documents and returns warnings, located like problems but never
fatal: the plain Kubernetes manifests the loader skipped, and a remote artifact without
``sha256`` (``kaip up``, ``deploy`` and ``apply`` pin it to the bytes they download, but the
digest is then in no reviewed file, and manifests ``kaip render`` makes for GitOps are not
pinned at all). No I/O.
"""

from __future__ import annotations

from kaip.errors import Problem
from kaip.spec.kinds import Model
from kaip.spec.loader import SpecSet

REMOTE_SCHEMES = ("http://", "https://", "s3://")


def advice(specs: SpecSet) -> list[Problem]:
    """Warnings for ``specs``, in file order."""
    out: list[Problem] = list(specs.skipped)
    for doc in specs.documents:
        resource = doc.resource
        if not isinstance(resource, Model):
            continue
        artifact = resource.spec.artifact
        if artifact.uri.startswith(REMOTE_SCHEMES) and artifact.sha256 is None:
            out.append(
                Problem(
                    str(doc.path),
                    doc.line,
                    1,
                    "spec.artifact.sha256",
                    f"Model {resource.metadata.name}: the remote artifact {artifact.uri} is not "
                    "pinned: kaip up, deploy and apply pin it to whatever the URL holds when "
                    "they run, and manifests from kaip render are not pinned at all",
                    "pin it with sha256: <the output of sha256sum FILE>",
                )
            )
    return out


__all__ = ["advice"]

"""Where a Model's artifact lives inside its pod, and how it gets there.

Three cases, decided by the artifact URI and the ``kaip.dev/artifact-pvc`` annotation:

* **Remote** (``http(s)://``, ``s3://``, ``gs://``): an init container in the kaip image runs
  ``python -m kaip.serving.fetch URI DEST [--sha256 HEX]`` into an emptyDir, or into the named
  PersistentVolumeClaim (a cache shared by replicas and revisions, keyed by the URI's digest).
* **Relative path** (``model.joblib``, resolved against the spec file locally): on Kubernetes it
  is read from ``/var/lib/kaip/artifacts/<path>``. Either mount a PVC holding it there (the
  annotation above) or bake it into the image at that path.
* **file://PATH**: read from PATH in the pod as is; bake it into the image or mount it there.

The model server reads a pod-local copy of the spec whose ``artifact.uri`` is rewritten to the
path above (``sha256`` stays, so the server still verifies what it loads). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from kaip.render.kube.pods import (
    Obj,
    container_security_context,
    small_resources,
    tmp_mount,
)
from kaip.spec import Model

ARTIFACT_DIR: Final = "/var/lib/kaip/artifacts"
ARTIFACT_VOLUME: Final = "artifacts"
PVC_ANNOTATION: Final = "kaip.dev/artifact-pvc"
REMOTE_SCHEMES: Final = ("http://", "https://", "s3://", "gs://")


@dataclass(frozen=True)
class ArtifactPlacement:
    """The pod-local path of the artifact and the pod parts that put it there."""

    pod_uri: str
    volumes: list[Obj] = field(default_factory=list)
    server_mounts: list[Obj] = field(default_factory=list)
    init_containers: list[Obj] = field(default_factory=list)


class ArtifactPathProblem(ValueError):
    """A relative artifact path that leaves the spec's directory (no meaning in a pod)."""


def _remote_file_name(uri: str) -> str:
    name = posixpath.basename(urlsplit(uri).path)
    return name or "artifact"


def place_artifact(model: Model, image: str) -> ArtifactPlacement:
    """Decide where ``model``'s artifact is read from in the pod and how it arrives there."""
    artifact = model.spec.artifact
    pvc = model.metadata.annotations.get(PVC_ANNOTATION)
    uri = artifact.uri
    if uri.startswith(REMOTE_SCHEMES):
        if pvc:
            # One cache for every replica and revision: the same URI lands in the same place.
            key = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]
            dest = f"{ARTIFACT_DIR}/{key}/{_remote_file_name(uri)}"
            volume: Obj = {"name": ARTIFACT_VOLUME, "persistentVolumeClaim": {"claimName": pvc}}
        else:
            dest = f"{ARTIFACT_DIR}/{_remote_file_name(uri)}"
            volume = {"name": ARTIFACT_VOLUME, "emptyDir": {}}
        args = [uri, dest]
        if artifact.sha256:
            args += ["--sha256", artifact.sha256]
        fetch: Obj = {
            "name": "fetch-artifact",
            "image": image,
            "command": ["python", "-m", "kaip.serving.fetch"],
            "args": args,
            "env": [{"name": "HOME", "value": "/tmp"}],
            "resources": small_resources(cpu="250m", memory="256Mi"),
            "securityContext": container_security_context(),
            "volumeMounts": [{"name": ARTIFACT_VOLUME, "mountPath": ARTIFACT_DIR}, tmp_mount()],
        }
        return ArtifactPlacement(
            pod_uri=f"file://{dest}",
            volumes=[volume],
            server_mounts=[_read_only_mount()],
            init_containers=[fetch],
        )
    if uri.startswith("file://"):
        return ArtifactPlacement(pod_uri=uri)
    relative = posixpath.normpath(uri)
    if relative.startswith("../") or relative == ".." or relative.startswith("/"):
        raise ArtifactPathProblem(
            f"artifact path {uri!r} is outside the spec's directory, which has no place in a "
            f"pod: use a path under it (read from {ARTIFACT_DIR}/), file://, or a remote URI"
        )
    pod_uri = f"file://{ARTIFACT_DIR}/{relative}"
    if pvc:
        return ArtifactPlacement(
            pod_uri=pod_uri,
            volumes=[
                {
                    "name": ARTIFACT_VOLUME,
                    "persistentVolumeClaim": {"claimName": pvc, "readOnly": True},
                }
            ],
            server_mounts=[_read_only_mount()],
        )
    return ArtifactPlacement(pod_uri=pod_uri)


def _read_only_mount() -> Obj:
    return {"name": ARTIFACT_VOLUME, "mountPath": ARTIFACT_DIR, "readOnly": True}


def pod_local_model(model: Model, pod_uri: str) -> Model:
    """``model`` with its artifact URI pointing at the pod-local path."""
    artifact = model.spec.artifact.model_copy(update={"uri": pod_uri})
    spec = model.spec.model_copy(update={"artifact": artifact})
    return model.model_copy(update={"spec": spec})

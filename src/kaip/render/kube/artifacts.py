"""Where a Model's artifact lives inside its pod, and how it gets there.

Three cases, decided by the artifact URI and ``spec.artifact.pvc``:

* **Remote** (``http(s)://``, ``s3://``): an init container in the kaip image runs
  ``python -m kaip.serving.fetch /etc/kaip/spec.yaml --model NAME``, which downloads (and
  verifies) the artifact into the model server's artifact cache, ``/var/lib/kaip/artifacts``
  (``KAIP_SERVING__ARTIFACT_CACHE_DIR``), an emptyDir of the pod. The server resolves the same
  URI and finds it there, so it starts without downloading anything. The init container
  reports the sha256 it verified or computed as its termination message (``{"sha256": HEX}``
  in ``/dev/termination-log``, which the kubelet copies into the pod's status); the operator
  records it and, for a spec that pins none, passes it back as ``--sha256`` (``pinned``), so
  every later pod of that revision verifies the bytes its first pod fetched.
* **Relative path** (``model.joblib``, resolved against the spec file locally): on Kubernetes it
  is read from ``/var/lib/kaip/artifacts/<path>``. Either declare the PersistentVolumeClaim
  holding it in ``spec.artifact.pvc`` (mounted there read-only) or bake it into the image at
  that path.
* **file://PATH** or an absolute path: read from PATH in the pod as is; bake it into the image
  or mount it there.

For a relative path the pod-local spec's ``artifact.uri`` is rewritten to that pod path
(``sha256`` stays, so the server still verifies what it loads).

A claim is mounted only when the Model declares it, and only read-only: no container kaip
renders can write to a volume the Model's author merely names. The ``kaip.dev/artifact-pvc``
annotation that used to name one (mounted writable in the fetch init container) is refused with
a pointer to ``spec.artifact.pvc``. Pure: no I/O.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Final

from kaip.render.kube.pods import (
    SPEC_PATH,
    Obj,
    container_security_context,
    small_resources,
    spec_mount,
    tmp_mount,
)
from kaip.spec import Model

ARTIFACT_DIR: Final = "/var/lib/kaip/artifacts"
ARTIFACT_VOLUME: Final = "artifacts"
PVC_ANNOTATION: Final = "kaip.dev/artifact-pvc"
REMOTE_SCHEMES: Final = ("http://", "https://", "s3://")
FETCH_CONTAINER: Final = "fetch-artifact"
TERMINATION_LOG: Final = "/dev/termination-log"


def cache_env() -> Obj:
    """The model server's artifact cache setting, pointed at the artifact volume."""
    return {"name": "KAIP_SERVING__ARTIFACT_CACHE_DIR", "value": ARTIFACT_DIR}


@dataclass(frozen=True)
class ArtifactPlacement:
    """The pod-local path of the artifact and the pod parts that put it there."""

    pod_uri: str
    volumes: list[Obj] = field(default_factory=list)
    server_mounts: list[Obj] = field(default_factory=list)
    server_env: list[Obj] = field(default_factory=list)
    init_containers: list[Obj] = field(default_factory=list)


class ArtifactPathProblem(ValueError):
    """An artifact that has no place in a pod as written; ``field`` is the spec path at fault."""

    def __init__(self, message: str, field: str = "spec.artifact.uri") -> None:
        super().__init__(message)
        self.field = field


def place_artifact(model: Model, image: str, pinned: str | None = None) -> ArtifactPlacement:
    """Decide where ``model``'s artifact is read from in the pod and how it arrives there.

    ``pinned``: the sha256 an unpinned remote artifact's revision was pinned to on first sight
    (by the operator); ignored when the spec pins its own.
    """
    artifact = model.spec.artifact
    if PVC_ANNOTATION in model.metadata.annotations:
        raise ArtifactPathProblem(
            f"the {PVC_ANNOTATION} annotation is no longer read (it mounted any claim "
            "writable): declare the claim as spec.artifact.pvc.claimName, with uri the path "
            "inside it; it is mounted read-only",
            field=f"metadata.annotations.{PVC_ANNOTATION}",
        )
    uri = artifact.uri
    if uri.startswith(REMOTE_SCHEMES):
        volume: Obj = {"name": ARTIFACT_VOLUME, "emptyDir": {}}
        args = [SPEC_PATH, "--model", model.metadata.name, "--report", TERMINATION_LOG]
        if pinned is not None and artifact.sha256 is None:
            args += ["--sha256", pinned]
        fetch: Obj = {
            "name": FETCH_CONTAINER,
            "image": image,
            "command": ["python", "-m", "kaip.serving.fetch"],
            "args": args,
            "terminationMessagePath": TERMINATION_LOG,
            "terminationMessagePolicy": "File",
            "env": [{"name": "HOME", "value": "/tmp"}, cache_env()],
            "resources": small_resources(cpu="250m", memory="256Mi"),
            "securityContext": container_security_context(),
            "volumeMounts": [
                spec_mount(),
                {"name": ARTIFACT_VOLUME, "mountPath": ARTIFACT_DIR},
                tmp_mount(),
            ],
        }
        return ArtifactPlacement(
            pod_uri=uri,
            volumes=[volume],
            server_mounts=[_read_only_mount()],
            server_env=[cache_env()],
            init_containers=[fetch],
        )
    if uri.startswith(("file://", "/")):
        return ArtifactPlacement(pod_uri=uri)
    relative = posixpath.normpath(uri)
    if relative == ".." or relative.startswith("../"):
        raise ArtifactPathProblem(
            f"artifact path {uri!r} is outside the spec's directory, which has no place in a "
            f"pod: use a path under it (read from {ARTIFACT_DIR}/), file://, or a remote URI"
        )
    pod_uri = f"file://{ARTIFACT_DIR}/{relative}"
    if artifact.pvc is not None:
        claim = {"claimName": artifact.pvc.claim_name, "readOnly": True}
        return ArtifactPlacement(
            pod_uri=pod_uri,
            volumes=[{"name": ARTIFACT_VOLUME, "persistentVolumeClaim": claim}],
            server_mounts=[_read_only_mount()],
        )
    return ArtifactPlacement(pod_uri=pod_uri)


def _read_only_mount() -> Obj:
    return {"name": ARTIFACT_VOLUME, "mountPath": ARTIFACT_DIR, "readOnly": True}


def pod_local_model(model: Model, pod_uri: str) -> Model:
    """``model`` with its artifact URI pointing at the pod-local path (the claim, if any, is
    mounted there already: the pod-local spec names none)."""
    artifact = model.spec.artifact.model_copy(update={"uri": pod_uri, "pvc": None})
    spec = model.spec.model_copy(update={"artifact": artifact})
    return model.model_copy(update={"spec": spec})

"""The engine container of a Model served by an engine (``serve.engine``) on Kubernetes.

The pod runs two containers: the engine's own (its pinned image, or ``serve.engine.image``; its
OpenAI server on ``127.0.0.1:8001``; the Model's ``resources``, GPUs included) and kaip's model
server (``python -m kaip.serving --engine-url http://127.0.0.1:8001``), which relays to it over
localhost, translates its metrics and carries the probes (:mod:`kaip.serving.relay`). Both meet
the restricted Pod Security Standard: the engine runs as kaip's non-root user with a read-only
root filesystem, its caches (``HOME``, Hugging Face, XDG) under ``/tmp``, and a memory-backed
``/dev/shm`` (engines pass tensors between processes through it).

The engine reads the artifact from a path in the pod: a claim (``artifact.pvc``, mounted
read-only where kaip's server would read it) or a path in its image (``file://`` or absolute).
A remote artifact is refused: kaip's fetch lands it in kaip's cache, under a name only kaip's
server resolves. Pure: no I/O.
"""

from __future__ import annotations

from typing import Final

from kaip.render.engines import POD_ENGINE_PORT, profile
from kaip.render.kube.artifacts import (
    ARTIFACT_DIR,
    REMOTE_SCHEMES,
    ArtifactPathProblem,
    ArtifactPlacement,
)
from kaip.render.kube.pods import Obj, container_security_context, tmp_mount
from kaip.spec import Model

ENGINE_CONTAINER: Final = "engine"
SHM_VOLUME: Final = "dshm"
SHM_LIMIT: Final = "2Gi"
RELAY_CPU: Final = "1"
RELAY_MEMORY: Final = "512Mi"
"""kaip's relay container: it passes bytes on, the engine container gets the Model's resources."""
CACHE_ENV: Final = {
    "HOME": "/tmp",
    "HF_HOME": "/tmp/huggingface",
    "XDG_CACHE_HOME": "/tmp/.cache",
}


def engine_port(model: Model) -> int:
    engine = model.spec.serve.engine
    assert engine is not None
    return engine.port or POD_ENGINE_PORT


def engine_url(model: Model) -> str:
    return f"http://127.0.0.1:{engine_port(model)}"


def engine_model_path(model: Model) -> str:
    """Where the engine container reads the artifact (ArtifactPathProblem for a remote one)."""
    uri = model.spec.artifact.uri
    if uri.startswith(REMOTE_SCHEMES):
        raise ArtifactPathProblem(
            f"serve.engine reads the artifact from a path in the pod, and {uri!r} is remote: "
            "put it on a PersistentVolumeClaim (artifact.pvc, uri the path inside it) or in the "
            "engine's image (file://PATH)"
        )
    if uri.startswith("file://"):
        return uri.removeprefix("file://")
    if uri.startswith("/"):
        return uri
    return f"{ARTIFACT_DIR}/{uri.strip('/')}".rstrip("/")


def engine_container(
    model: Model,
    placement: ArtifactPlacement,
    resources: Obj,
    env: list[Obj],
    env_from: Obj,
) -> Obj:
    """The engine's container: ``resources`` are the Model's, ``env`` and ``env_from`` its user's
    environment (with :data:`CACHE_ENV` as defaults)."""
    engine = model.spec.serve.engine
    assert engine is not None
    kind = profile(engine.name)
    names = model.spec.serve.names or [model.metadata.name]
    argv = kind.command(
        engine_model_path(model), names[0], engine_port(model), engine.args, pod=True
    )
    return {
        "name": ENGINE_CONTAINER,
        "image": engine.image or kind.image,
        "command": argv[:1],
        "args": argv[1:],
        "env": env,
        **env_from,
        "resources": resources,
        "securityContext": container_security_context(),
        "volumeMounts": [
            *placement.server_mounts,
            tmp_mount(),
            {"name": SHM_VOLUME, "mountPath": "/dev/shm"},
        ],
    }


def shm_volume() -> Obj:
    return {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": SHM_LIMIT}}


__all__ = [
    "ENGINE_CONTAINER",
    "engine_container",
    "engine_model_path",
    "engine_url",
    "shm_volume",
]

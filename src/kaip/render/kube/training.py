"""Kubernetes objects for a ``TrainingJob``: a ``batch/v1`` Job and what it needs.

One node is a plain Job. ``nodes > 1`` makes an Indexed Job (``completions = parallelism =
nodes``) with a headless Service, so that node ``i`` is reachable as ``NAME-REV-i.NAME-REV``
and node 0 is the rendezvous (``MASTER_ADDR``; ``RANK`` is the completion index, as
``torchrun`` and most launchers expect). ``maxRetries`` is the Job's ``backoffLimit``. When
``settings.kube.kueue_queue`` is set the Job carries the ``kueue.x-k8s.io/queue-name`` label
and starts suspended, so that Kueue admits it when quota allows.

A ``checkpointDir`` that is an absolute path is mounted writable: from the PVC named by the
``kaip.dev/checkpoint-pvc`` annotation (so a retried pod resumes), else from an emptyDir (which
only survives container restarts). The Job is named per revision (its pod template is
immutable), next to a ServiceAccount without a token. Pure: plain dicts out.
"""

from __future__ import annotations

from typing import Final

from kaip.plan import Workload
from kaip.render.kube import pod_options
from kaip.render.kube.pods import (
    Obj,
    container_resources,
    container_security_context,
    pod_security_context,
    tmp_mount,
    tmp_volume,
)
from kaip.render.kube.serving import metadata, service_account
from kaip.settings import Settings
from kaip.spec import TrainingJob

KUEUE_QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
CHECKPOINT_PVC_ANNOTATION: Final = "kaip.dev/checkpoint-pvc"
RENDEZVOUS_PORT: Final = 29500


def _env(workload: Workload, job: TrainingJob) -> dict[str, str]:
    """The variables kaip's wiring sets (the spec's own env cannot replace them)."""
    spec = job.spec
    env: dict[str, str] = {}
    if spec.checkpoint_dir:
        env["KAIP_CHECKPOINT_DIR"] = spec.checkpoint_dir
    if spec.output:
        env["KAIP_OUTPUT_URI"] = spec.output.uri
        env["KAIP_OUTPUT_FORMAT"] = spec.output.format
    if spec.nodes > 1:
        env |= {
            "WORLD_SIZE": str(spec.nodes),
            "MASTER_ADDR": f"{workload.revision_name}-0.{workload.revision_name}",
            "MASTER_PORT": str(RENDEZVOUS_PORT),
        }
    return env


def _rank_env() -> Obj:
    return {
        "name": "RANK",
        "valueFrom": {
            "fieldRef": {
                "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
            }
        },
    }


def _headless_service(workload: Workload) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(workload.revision_name, workload, workload.labels),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": dict(workload.revision_selector),
            "ports": [{"name": "rendezvous", "protocol": "TCP", "port": RENDEZVOUS_PORT}],
        },
    }


def job_objects(workload: Workload, settings: Settings) -> list[Obj]:
    job = workload.resource
    if not isinstance(job, TrainingJob):
        raise TypeError(f"{job.kind} is not a TrainingJob")
    spec = job.spec
    env = pod_options.container_env(
        spec,
        defaults={"HOME": "/tmp"},
        fixed=_env(workload, job),
        reserved=("RANK",) if spec.nodes > 1 else (),
    )
    if spec.nodes > 1:
        env.append(_rank_env())
    user_volumes, user_mounts = pod_options.volumes(spec)
    container: Obj = {
        "name": "train",
        "image": workload.image,
        "command": list(spec.command),
        "env": env,
        **pod_options.container_env_from(spec),
        "resources": container_resources(workload.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [tmp_mount(), *user_mounts],
    }
    volumes = [tmp_volume(), *user_volumes]
    # A spec volume mounted at checkpointDir is the checkpoint store (a PVC, say).
    declared = any(v.mount_path == spec.checkpoint_dir for v in spec.volumes)
    if spec.checkpoint_dir and spec.checkpoint_dir.startswith("/") and not declared:
        claim = job.metadata.annotations.get(CHECKPOINT_PVC_ANNOTATION)
        source: Obj = {"persistentVolumeClaim": {"claimName": claim}} if claim else {"emptyDir": {}}
        volumes.insert(0, {"name": "checkpoints", **source})
        container["volumeMounts"].insert(
            0, {"name": "checkpoints", "mountPath": spec.checkpoint_dir}
        )
    pod: Obj = {
        **pod_options.service_account(spec, workload.name),
        "enableServiceLinks": False,
        "restartPolicy": "Never",
        "securityContext": pod_security_context(),
        **pod_options.scheduling(spec, workload.resources),
        "containers": [container],
        "volumes": volumes,
    }
    job_spec: Obj = {"backoffLimit": spec.max_retries}
    objects: list[Obj] = [] if spec.service_account_name else [service_account(workload)]
    if spec.nodes > 1:
        pod["subdomain"] = workload.revision_name
        job_spec |= {
            "completionMode": "Indexed",
            "completions": spec.nodes,
            "parallelism": spec.nodes,
        }
        objects.append(_headless_service(workload))
    labels = dict(workload.labels)
    if settings.kube.kueue_queue:
        labels[KUEUE_QUEUE_LABEL] = settings.kube.kueue_queue
        job_spec["suspend"] = True
    job_spec["template"] = {"metadata": {"labels": dict(workload.labels)}, "spec": pod}
    objects.append(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": metadata(workload.revision_name, workload, labels, annotations=True),
            "spec": job_spec,
        }
    )
    return objects

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
immutable), next to a ServiceAccount without a token.

The container's termination message is the job's report (:mod:`kaip.training`): its
``terminationMessagePath`` is named to the job as ``KAIP_REPORT_FILE``, where
``kaip.training.metric`` keeps the metrics it reported, and the operator reads them from the
succeeded pod's status for the version it registers (the quality gate judges them). Pure: plain
dicts out.

With ``settings.kube.jobset`` (the operator sets it when the cluster serves JobSet) ``nodes > 1``
is a ``jobset.x-k8s.io/v1alpha2`` JobSet instead: one replicated Job (``node``) of ``nodes``
indexed pods, which JobSet gives stable host names (``NAME-REV-node-0-I.NAME-REV``, its own
headless Service) and restarts as a whole, up to ``maxRetries`` times, when any pod fails -- every
rank starts again together, from the last checkpoint. Kueue queues the JobSet as a unit.
"""

from __future__ import annotations

from typing import Final

from kaip.plan import Workload
from kaip.render.kube import pod_options
from kaip.render.kube.artifacts import TERMINATION_LOG
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
from kaip.training import REPORT_FILE_ENV

KUEUE_QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
JOBSET_API: Final = "jobset.x-k8s.io/v1alpha2"
REPLICATED_JOB: Final = "node"
CHECKPOINT_PVC_ANNOTATION: Final = "kaip.dev/checkpoint-pvc"
RENDEZVOUS_PORT: Final = 29500


def uses_jobset(job: TrainingJob, settings: Settings) -> bool:
    """Whether ``job`` renders as a JobSet rather than a Job."""
    return job.spec.nodes > 1 and settings.kube.jobset


def _env(workload: Workload, job: TrainingJob, jobset: bool) -> dict[str, str]:
    """The variables kaip's wiring sets (the spec's own env cannot replace them)."""
    spec = job.spec
    env: dict[str, str] = {REPORT_FILE_ENV: TERMINATION_LOG}
    if spec.checkpoint_dir:
        env["KAIP_CHECKPOINT_DIR"] = spec.checkpoint_dir
    if spec.output:
        env["KAIP_OUTPUT_URI"] = spec.output.uri
        env["KAIP_OUTPUT_FORMAT"] = spec.output.format
    if spec.nodes > 1:
        name = workload.revision_name
        first = f"{name}-{REPLICATED_JOB}-0-0" if jobset else f"{name}-0"
        env |= {
            "WORLD_SIZE": str(spec.nodes),
            "MASTER_ADDR": f"{first}.{name}",
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
    jobset = uses_jobset(job, settings)
    env = pod_options.container_env(
        spec,
        defaults={"HOME": "/tmp"},
        fixed=_env(workload, job, jobset),
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
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
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
    if jobset:
        objects.append(_jobset(workload, job, settings, pod))
        return objects
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


def _jobset(workload: Workload, job: TrainingJob, settings: Settings, pod: Obj) -> Obj:
    """The JobSet of a multi-node TrainingJob: ``nodes`` indexed pods in one replicated Job.

    A pod that fails fails its Job (``backoffLimit: 0``), and JobSet restarts every pod
    (``failurePolicy.maxRestarts`` = ``maxRetries``): ranks never train apart.
    """
    spec = job.spec
    nodes = spec.nodes
    labels = dict(workload.labels)
    jobset_spec: Obj = {}
    if settings.kube.kueue_queue:
        labels[KUEUE_QUEUE_LABEL] = settings.kube.kueue_queue
        jobset_spec["suspend"] = True
    jobset_spec |= {
        "failurePolicy": {"maxRestarts": spec.max_retries},
        "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
        "replicatedJobs": [
            {
                "name": REPLICATED_JOB,
                "replicas": 1,
                "template": {
                    "metadata": {"labels": dict(workload.labels)},
                    "spec": {
                        "backoffLimit": 0,
                        "completionMode": "Indexed",
                        "completions": nodes,
                        "parallelism": nodes,
                        "template": {"metadata": {"labels": dict(workload.labels)}, "spec": pod},
                    },
                },
            }
        ],
    }
    return {
        "apiVersion": JOBSET_API,
        "kind": "JobSet",
        "metadata": metadata(workload.revision_name, workload, labels, annotations=True),
        "spec": jobset_spec,
    }

"""What a succeeded TrainingJob reported: the metrics and parameters in its pod's status.

On a cluster no one reads a job's stdout for ``KAIP_METRIC`` lines; the job's container keeps
its report in the file ``KAIP_REPORT_FILE`` names, its ``terminationMessagePath``
(:mod:`kaip.training`, :mod:`kaip.render.kube.training`), and the kubelet copies that file into
the pod's status as the container's termination message when it exits. The rule:

* the report is the termination message of the ``train`` container of the Job's **succeeded**
  pod that exited 0 -- of rank 0 when the job has several nodes (completion index 0), the
  newest such pod if a retry made more than one;
* it must decode (:func:`kaip.training.decode_report`: JSON, at most 2 KiB, finite numbers);
* anything else -- no such pod, no message, a malformed one -- is a report with no metrics and a
  ``problem`` saying what is missing and how the job reports. The version is still registered
  (the bytes exist, and lineage wants them), and a Model's ``qualityGate`` then refuses it: no
  evidence is not good evidence (:mod:`kaip.policy.quality`).

Pure: the pods come from the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from kaip.training import MAX_REPORT_BYTES, REPORT_FILE_ENV, FinalReport, decode_report

CONTAINER: Final = "train"
"""The name of a TrainingJob's container (:func:`kaip.render.kube.training.job_objects`)."""
COMPLETION_INDEX: Final = "batch.kubernetes.io/job-completion-index"
HOW: Final = (
    f'report them with kaip.training.metric (or write {{"metrics": {{NAME: NUMBER}}}}, at most '
    f"{MAX_REPORT_BYTES} bytes, to the file ${REPORT_FILE_ENV} names)"
)


@dataclass(frozen=True)
class JobReport:
    """The report of a succeeded Job, or why it has none."""

    report: FinalReport
    pod: str | None = None
    """The pod it was read from."""
    problem: str | None = None
    """Why there are no metrics, for people (None when the report was read)."""


def _succeeded(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``terminated`` state of ``pod``'s train container if it exited 0, else None."""
    if (pod.get("status") or {}).get("phase") != "Succeeded":
        return None
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if not isinstance(status, Mapping) or status.get("name") != CONTAINER:
            continue
        terminated = (status.get("state") or {}).get("terminated")
        if isinstance(terminated, Mapping) and terminated.get("exitCode") == 0:
            return terminated
    return None


def job_report(run: str, pods: Sequence[Mapping[str, Any]]) -> JobReport:
    """What the Job ``run`` reported, from its ``pods`` (its revision's, any phase)."""
    finished: list[tuple[str, str, Mapping[str, Any]]] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        index = (meta.get("annotations") or {}).get(COMPLETION_INDEX, "0")
        terminated = _succeeded(pod)
        if terminated is not None and index == "0":
            finished.append((str(meta.get("creationTimestamp", "")), str(meta["name"]), terminated))
    if not finished:
        return JobReport(
            FinalReport(), problem=f"the Job {run} has no succeeded pod to read its metrics from"
        )
    _, name, terminated = max(finished, key=lambda f: (f[0], f[1]))
    message = terminated.get("message")
    try:
        report = decode_report(message if isinstance(message, str) else "")
    except ValueError as exc:
        return JobReport(
            FinalReport(),
            pod=name,
            problem=f"pod {name}'s termination message, the job's report: {exc}; {HOW}",
        )
    if not report.metrics:
        return JobReport(report, pod=name, problem=f"pod {name} reported no metric; {HOW}")
    return JobReport(report, pod=name)

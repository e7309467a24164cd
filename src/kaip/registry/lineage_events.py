"""OpenLineage run events of training runs, sent through the official ``openlineage-python``.

A run sends ``START`` when its first attempt starts, then ``COMPLETE`` (its output dataset with
the version it registered), ``FAIL`` (the reason, in an ``errorMessage`` facet) or ``ABORT``
(cancelled) once it ends, so Marquez or any OpenLineage consumer sees job -> run -> datasets: the
job's ``spec.inputs`` as input datasets and its artifact as the output dataset. Every event of a
run has the same ``runId``, a UUID derived from the job, the run number and its start time. Job
namespace: ``kaip``.

Only when a transport is configured, the OpenLineage way (``OPENLINEAGE_URL``,
``OPENLINEAGE_CONFIG`` or ``OPENLINEAGE__TRANSPORT__*``): :func:`from_environment` returns None
otherwise and nothing is imported, so kaip runs without the package (``pip install
'kaip[lineage]'``). The entrypoint (``kaip up``, ``kaip train``) reads the environment and passes
the emitter down. Events are sent from one worker thread, never from the caller's (an event loop);
a consumer that is down or slow never fails or holds up a run: the failure is reported once per
event and the event dropped. :meth:`OpenLineageEmitter.close` waits a bounded time for what is
queued.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import urlparse

from kaip import __version__
from kaip.registry.records import ModelVersion
from kaip.registry.runs import RunRecord

NAMESPACE = "kaip"
PRODUCER = f"https://github.com/kaip-dev/kaip/tree/v{__version__}"
CLOSE_SECONDS = 10.0
"""How long an entrypoint that stops waits for the events still queued."""
MAX_QUEUED = 1000
"""Events waiting for the worker; past this a new one is dropped (and said so)."""
EventType = Literal["START", "COMPLETE", "FAIL", "ABORT"]


class LineageEmitter(Protocol):
    """Where a runner sends a run's lineage events (a Protocol: tests may give their own)."""

    def emit(
        self,
        event_type: EventType,
        run: RunRecord,
        inputs: Sequence[str],
        *,
        output: str | None = None,
        version: ModelVersion | None = None,
        error: str | None = None,
    ) -> None: ...

    def close(self, timeout: float) -> None: ...


def configured(environ: Mapping[str, str]) -> bool:
    """Whether the environment configures an OpenLineage transport."""
    return bool(
        environ.get("OPENLINEAGE_URL")
        or environ.get("OPENLINEAGE_CONFIG")
        or any(key.startswith("OPENLINEAGE__TRANSPORT") for key in environ)
    )


def from_environment(
    environ: Mapping[str, str], report: Callable[[str], None]
) -> OpenLineageEmitter | None:
    """An emitter when a transport is configured (call from an entrypoint), else None."""
    if not configured(environ):
        return None
    try:
        from openlineage.client import OpenLineageClient
    except ImportError:
        report(
            "OpenLineage: a transport is configured (OPENLINEAGE_*), but the client is not "
            "installed: pip install 'kaip[lineage]'; no lineage events are sent"
        )
        return None
    return OpenLineageEmitter(OpenLineageClient(), report)


def run_uuid(run: RunRecord) -> str:
    """The OpenLineage runId of ``run``: the same in every event of the run."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kaip:{run.job}:{run.id}:{run.started_at!r}"))


def dataset(uri: str) -> tuple[str, str]:
    """OpenLineage's (namespace, name) of a dataset URI, after its naming conventions:
    ``s3://bucket/key`` -> (``s3://bucket``, ``key``); a local path -> (``file``, the path)."""
    parsed = urlparse(uri)
    if parsed.scheme and parsed.scheme != "file":
        return f"{parsed.scheme}://{parsed.netloc}", parsed.path.lstrip("/") or parsed.netloc
    return "file", parsed.path or uri


class OpenLineageEmitter:
    """Builds events with the client's own classes and sends them from one worker thread."""

    def __init__(self, client: Any, report: Callable[[str], None]) -> None:
        self.client = client
        self.report = report
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kaip-openlineage")
        self._queued = 0
        self._lock = threading.Lock()

    def emit(
        self,
        event_type: EventType,
        run: RunRecord,
        inputs: Sequence[str],
        *,
        output: str | None = None,
        version: ModelVersion | None = None,
        error: str | None = None,
    ) -> None:
        event = build_event(event_type, run, inputs, output=output, version=version, error=error)
        with self._lock:
            full = self._queued >= MAX_QUEUED
            self._queued += 0 if full else 1
        if full:
            self.report(f"OpenLineage: {MAX_QUEUED} events wait already; dropped {event_type}")
            return
        self._worker.submit(self._send, event, f"{event_type} of {run.job} run {run.id}")

    def _send(self, event: Any, what: str) -> None:
        try:
            self.client.emit(event)
        except Exception as exc:  # the consumer's failure is never the run's
            self.report(f"OpenLineage: could not send {what}: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._queued -= 1

    def close(self, timeout: float) -> None:
        """Send what is queued, waiting at most ``timeout`` seconds, then stop the worker."""
        done = self._worker.submit(lambda: None)
        try:
            done.result(timeout)
        except TimeoutError:
            self.report(f"OpenLineage: {self._queued} events not sent within {timeout:g}s")
        self._worker.shutdown(wait=False, cancel_futures=True)
        self.client.close(timeout)


def build_event(
    event_type: EventType,
    run: RunRecord,
    inputs: Sequence[str],
    *,
    output: str | None = None,
    version: ModelVersion | None = None,
    error: str | None = None,
) -> Any:
    """One RunEvent of ``run``, made with ``openlineage-python``'s classes (``event_v2``)."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import (
        dataset_version_dataset,
        error_message_run,
        job_type_job,
        processing_engine_run,
    )

    run_facets: dict[str, Any] = {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=__version__, name="kaip", openlineageAdapterVersion=__version__
        )
    }
    if error is not None:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error[:4096], programmingLanguage="unknown"
        )
    outputs = []
    where = version.storage_uri if version is not None else output
    if where is not None:
        namespace, name = dataset(where)
        facets: dict[str, Any] = {}
        if version is not None:
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=f"{version.name}@{version.version}"
            )
        outputs.append(OutputDataset(namespace=namespace, name=name, facets=facets))
    return RunEvent(
        eventType=getattr(RunState, event_type),
        eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=run_uuid(run), facets=run_facets),
        job=Job(
            namespace=NAMESPACE,
            name=run.job,
            facets={
                "jobType": job_type_job.JobTypeJobFacet(
                    processingType="BATCH", integration="KAIP", jobType="TRAINING"
                )
            },
        ),
        inputs=[InputDataset(namespace=ns, name=name) for ns, name in map(dataset, inputs)],
        outputs=outputs,
        producer=PRODUCER,
    )

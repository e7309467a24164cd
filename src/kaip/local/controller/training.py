"""The training runner: each TrainingJob as a supervised run, from first attempt to a version.

The rules it follows:

* **One run per job revision.** Applying a TrainingJob starts a run of that spec revision,
  unless one already succeeded (it is not run again; change the spec, or use ``kaip train``) or
  failed for good (said so, not retried). Applying a changed spec cancels the older revision's
  run (SIGTERM) and starts the new one. A run left unfinished by a ``kaip`` that died is resumed
  by the next one as its next attempt (the old process, if still ours, is killed first).
* **Retries with backoff.** An attempt that exits non-zero (or is killed) is retried after
  ``min(30, 2 ** (attempt - 1))`` seconds while attempts <= ``maxRetries``; then the run fails
  with the last exit code.
* **Resumption.** Every attempt gets ``KAIP_CHECKPOINT_DIR``; a retry also gets
  ``KAIP_RESUME_FROM``, the newest checkpoint this run wrote (never one of an earlier run), and
  the log says which.
* **Reports.** ``KAIP_PROGRESS``/``KAIP_METRIC``/``KAIP_PARAM`` lines (:mod:`kaip.training`) are
  read from the log at every tick and recorded on the run.
* **Registration.** An attempt that exits 0 with ``output`` set registers the artifact it wrote
  as the next version of ``output.model`` (else of the job's name), with the run's metrics and
  parameters, its commit and its job and run; a missing artifact fails the run. An
  ``s3://BUCKET/KEY`` output is written by the job itself (it is told the URI as
  ``KAIP_OUTPUT_URI`` and uploads with any S3 client); kaip then downloads it once, bounded and
  hashed as the model server downloads artifacts (:mod:`kaip.serving.s3`), and registers that
  copy, so a later run writing the same key never changes a registered version. What happens to
  the version next (a canary, or a refusal by the quality gate) is :mod:`.delivery`'s business.

Used by the controller under ``kaip up`` (:meth:`TrainingRunner.tick` at every tick) and by
``kaip train`` on its own (:func:`run_to_end`). All times but the run records' are monotonic.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kaip.errors import KaipError, PlatformError
from kaip.local.supervisor.jobs import (
    JobLaunch,
    JobProcess,
    append_log,
    describe_exit,
    kill_recorded,
)
from kaip.local.supervisor.process import start_ticks
from kaip.registry import (
    FINISHED,
    ModelVersion,
    Registration,
    Registry,
    RunRecord,
    RunStore,
)
from kaip.registry.lineage_events import EventType, LineageEmitter
from kaip.registry.outputs import local_copy
from kaip.spec import TrainingJob
from kaip.spec.base import parse_quantity

BACKOFF_MAX_SECONDS = 30.0
STOP_GRACE_SECONDS = 10.0
PROGRESS_WRITE_SECONDS = 1.0
"""Progress goes to the run record at most this often (``kaip jobs`` reads it from there)."""


@dataclass
class ActiveRun:
    """A run this runner is responsible for, in memory."""

    job: TrainingJob
    revision: str
    source: Path
    record: RunRecord
    process: JobProcess | None = None
    next_start_at: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    progress: float | None = None
    progress_written_at: float = 0.0

    @property
    def name(self) -> str:
        return self.job.metadata.name

    @property
    def base_dir(self) -> Path:
        return self.source.parent


class TrainingRunner:
    """Runs TrainingJobs as local processes; call :meth:`tick` from one loop."""

    def __init__(
        self,
        runs: RunStore,
        registry: Registry,
        log_dir: Path,
        *,
        report: Callable[[str], None] = lambda line: None,
        on_change: Callable[[], None] = lambda: None,
        on_registered: Callable[[ModelVersion], None] = lambda version: None,
        clock: Callable[[], float] = time.monotonic,
        lineage: LineageEmitter | None = None,
    ) -> None:
        self.runs = runs
        self.lineage = lineage
        self.registry = registry
        self.log_dir = log_dir
        self.report = report
        self._on_change = on_change
        self._on_registered = on_registered
        self._clock = clock
        self.active: dict[str, ActiveRun] = {}
        self.finished: dict[str, RunRecord] = {}
        self.owners: dict[str, str] = {}
        """Each desired job's owner, from its latest spec (the portal's catalog)."""
        self._watchers: set[asyncio.Task[None]] = set()

    # -- what the controller asks -----------------------------------------------------------

    async def desire(
        self, job: TrainingJob, revision: str, source: Path, commit_sha: str | None
    ) -> str:
        """Make a run of ``job`` at ``revision`` happen (once); say what was done."""
        name = job.metadata.name
        self.owners[name] = job.spec.owner
        label = f"TrainingJob {name}"
        current = self.active.get(name)
        if current is not None:
            if current.revision == revision:
                return f"{label}: run {current.record.id} is already running"
            await self._cancel(current, f"superseded by revision {revision}")
        last = self.runs.latest(name, revision)
        if last is not None and last.status == "succeeded":
            self.finished[name] = last
            made = f", version {last.version_name}@{last.version}" if last.version else ""
            return (
                f"{label}: revision {revision} already ran (run {last.id} succeeded{made}); "
                "change the spec to run it again, or `kaip train`"
            )
        if last is not None and last.status == "failed":
            self.finished[name] = last
            return (
                f"{label}: revision {revision} failed in run {last.id} ({last.message}); "
                f"see `kaip logs {name}`, change the spec to run it again, or `kaip train`"
            )
        if last is not None and last.status not in FINISHED:
            if last.pid is not None and kill_recorded(last.pid, last.start_ticks, last.cmdline):
                append_log(Path(last.log_path), f"killed attempt {last.attempt} (pid {last.pid})"
                           " left by a kaip that stopped")  # fmt: skip
            run = ActiveRun(job, revision, source.resolve(), last)
            run.metrics, run.params = dict(last.metrics), dict(last.params)
            self.active[name] = run
            await self._next_attempt(run, "the kaip running it stopped")
            return f"{label}: resuming run {last.id} (attempt {run.record.attempt})"
        run = self._new_run(job, revision, source, commit_sha)
        self.active[name] = run
        await self._start(run)
        return f"{label}: started run {run.record.id} of revision {revision}"

    def forget(self, name: str) -> None:
        self.finished.pop(name, None)

    async def tick(self) -> bool:
        """Read reports, act on exits and due retries. True if some run changed."""
        changed = False
        now = self._clock()
        for run in list(self.active.values()):
            if run.process is not None:
                self._read_reports(run, now)
                code = run.process.returncode
                if code is not None:
                    changed = True
                    await self._exited(run, code)
            elif run.next_start_at is not None and run.next_start_at <= now:
                changed = True
                await self._start(run)
        return changed

    async def shutdown(self) -> None:
        """Stop every running attempt (SIGTERM, then SIGKILL); the runs stay resumable."""
        for run in list(self.active.values()):
            await self._stop(run)
            self.runs.update(run.record.id, status="interrupted", pid=None,
                             message="kaip stopped; the next kaip up resumes it")  # fmt: skip
            append_log(Path(run.record.log_path), "interrupted: kaip is stopping")
        self.active.clear()

    def status(self) -> list[dict[str, object]]:
        """Every job this runner knows, for ``kaip status``."""
        items: list[dict[str, object]] = []
        for run in self.active.values():
            record = self.runs.get(run.record.id) or run.record
            items.append(_status(record, run.progress))
        for name, record in self.finished.items():
            if name not in self.active:
                items.append(_status(record, record.progress))
        return sorted(items, key=lambda item: str(item["job"]))

    # -- attempts -----------------------------------------------------------------------------

    def _new_run(
        self, job: TrainingJob, revision: str, source: Path, commit_sha: str | None
    ) -> ActiveRun:
        name = job.metadata.name
        checkpoint = _resolve_dir(job.spec.checkpoint_dir, source.resolve().parent)
        record = self.runs.start(
            job=name,
            revision=revision,
            spec_path=str(source.resolve()),
            max_retries=job.spec.max_retries,
            log_path=str(self.log_dir / f"{name}-{{run}}.log"),
            checkpoint_dir=str(checkpoint) if checkpoint else None,
            commit_sha=commit_sha,
        )
        self.finished.pop(name, None)
        return ActiveRun(job, revision, source.resolve(), record)

    async def _start(self, run: ActiveRun) -> None:
        record = run.record
        spec = run.job.spec
        run.next_start_at = None
        if record.attempt == 1:
            self._lineage_event("START", run)
        env = {
            **spec.env,
            "KAIP_JOB_NAME": run.name,
            "KAIP_RUN_ID": str(record.id),
            "KAIP_ATTEMPT": str(record.attempt),
        }
        resumed_from = None
        if record.checkpoint_dir:
            checkpoint_dir = Path(record.checkpoint_dir)
            checkpoint_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            env["KAIP_CHECKPOINT_DIR"] = str(checkpoint_dir)
            if record.attempt > 1:
                resumed_from = newest_checkpoint(checkpoint_dir, since=record.started_at)
                if resumed_from is not None:
                    env["KAIP_RESUME_FROM"] = str(resumed_from)
        if spec.output is not None:
            env["KAIP_OUTPUT_URI"] = _output_location(spec.output.uri, run.base_dir)
            env["KAIP_OUTPUT_FORMAT"] = spec.output.format
        argv = list(spec.command)
        if argv[0] == "python":
            argv[0] = sys.executable
        launch = JobLaunch(
            argv=tuple(argv),
            cwd=run.base_dir,
            env=env,
            log_path=Path(record.log_path),
            cpu=parse_quantity(spec.resources.cpu),
            memory_bytes=int(parse_quantity(spec.resources.memory)),
        )
        attempts = spec.max_retries + 1
        resume = f", resuming from {resumed_from}" if resumed_from else ""
        header = f"run {record.id} attempt {record.attempt}/{attempts}: {' '.join(argv)}{resume}"
        try:
            process = await JobProcess.start(launch, header)
        except OSError as exc:
            append_log(launch.log_path, f"cannot start: {exc}")
            self._fail(run, f"cannot start {argv[0]}: {exc.strerror or exc}", None)
            return
        if process.limits:
            append_log(launch.log_path, f"limits (best effort): {', '.join(process.limits)}")
        run.process = process
        run.record = self.runs.update(
            record.id,
            status="running",
            pid=process.pid,
            start_ticks=start_ticks(process.pid),
            resumed_from=str(resumed_from) if resumed_from else None,
        )
        self.report(
            f"TrainingJob {run.name}: run {record.id} attempt {record.attempt}/{attempts} "
            f"started (pid {process.pid}){resume}"
        )
        watcher = asyncio.get_running_loop().create_task(self._watch(process))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, process: JobProcess) -> None:
        await process.wait()
        self._on_change()

    def _read_reports(self, run: ActiveRun, now: float) -> None:
        assert run.process is not None
        progress_changed = False
        for report in run.process.reports():
            if report.what == "progress":
                assert isinstance(report.value, float)
                run.progress, progress_changed = report.value, True
            elif report.what == "metric" and len(run.metrics) < 256:
                assert isinstance(report.value, float)
                run.metrics[report.name] = report.value
                run.record = self.runs.update(run.record.id, metrics=run.metrics)
            elif report.what == "param" and len(run.params) < 256:
                run.params[report.name] = str(report.value)
                run.record = self.runs.update(run.record.id, params=run.params)
        if progress_changed and now - run.progress_written_at >= PROGRESS_WRITE_SECONDS:
            run.progress_written_at = now
            run.record = self.runs.update(run.record.id, progress=run.progress)

    async def _exited(self, run: ActiveRun, code: int) -> None:
        record = run.record
        process, run.process = run.process, None
        outcome = describe_exit(code)
        if code != 0 and process is not None and process.out_of_memory():
            outcome += (
                f" (out of memory: over its limit resources.memory "
                f"{run.job.spec.resources.memory}, applied as RLIMIT_DATA "
                f"{process.memory_limit} bytes; raise it or use less)"
            )
        append_log(Path(record.log_path), f"attempt {record.attempt} ended: {outcome}")
        if code == 0:
            await self._succeeded(run)
            return
        attempts = run.job.spec.max_retries + 1
        if record.attempt >= attempts:
            self._fail(run, f"{outcome} on attempt {record.attempt}/{attempts}", code)
            return
        await self._next_attempt(run, outcome, code)

    async def _next_attempt(self, run: ActiveRun, why: str, code: int | None = None) -> None:
        record = run.record
        attempts = run.job.spec.max_retries + 1
        if record.attempt >= attempts:
            self._fail(run, f"{why}; no attempts left ({record.attempt}/{attempts})", code)
            return
        delay = min(BACKOFF_MAX_SECONDS, 2.0 ** (record.attempt - 1))
        run.next_start_at = self._clock() + delay
        run.record = self.runs.update(
            record.id, status="retrying", attempt=record.attempt + 1, exit_code=code, pid=None,
            message=f"attempt {record.attempt} {why}; retrying in {delay:g}s",
        )  # fmt: skip
        self.report(
            f"TrainingJob {run.name}: run {record.id} attempt {record.attempt}/{attempts} {why}, "
            f"retrying in {delay:g}s"
        )

    async def _succeeded(self, run: ActiveRun) -> None:
        record = run.record
        output = run.job.spec.output
        version: ModelVersion | None = None
        if output is not None:
            location = _output_location(output.uri, run.base_dir)
            with tempfile.TemporaryDirectory(prefix="kaip-output-") as scratch:
                try:
                    path = await asyncio.to_thread(local_copy, location, Path(scratch))
                except KaipError as exc:
                    self._fail(run, f"exited 0 but its artifact is not readable: {exc.message}", 0)
                    return
                if not path.exists():
                    self._fail(run, f"exited 0 but wrote no artifact at {location}", 0)
                    return
                try:
                    version = await asyncio.to_thread(
                        self.registry.register,
                        Registration(
                            name=output.model or run.name,
                            path=path,
                            format=output.format,
                            metrics=dict(run.metrics),
                            params=dict(run.params),
                            source_commit=record.commit_sha,
                            job=run.name,
                            run_id=record.id,
                        ),
                    )
                except KaipError as exc:
                    self._fail(
                        run, f"exited 0 but registering its artifact failed: {exc.message}", 0
                    )
                    return
        made = f"; registered {version.name} version {version.version}" if version else ""
        run.record = self.runs.update(
            record.id, status="succeeded", exit_code=0, pid=None, progress=1.0,
            finished_at=time.time(), message=f"succeeded on attempt {record.attempt}{made}",
            version_name=version.name if version else None,
            version=version.version if version else None,
        )  # fmt: skip
        append_log(Path(record.log_path), f"run {record.id} succeeded{made}")
        self.report(f"TrainingJob {run.name}: run {record.id} succeeded{made}")
        self._lineage_event("COMPLETE", run, version=version)
        self._finish(run)
        if version is not None:
            self._on_registered(version)

    def _fail(self, run: ActiveRun, message: str, code: int | None) -> None:
        record = run.record
        run.record = self.runs.update(
            record.id, status="failed", exit_code=code, pid=None, finished_at=time.time(),
            message=message,
        )  # fmt: skip
        append_log(Path(record.log_path), f"run {record.id} failed: {message}")
        self.report(f"TrainingJob {run.name}: run {record.id} failed: {message}")
        self._lineage_event("FAIL", run, error=message)
        self._finish(run)

    def _finish(self, run: ActiveRun) -> None:
        self.active.pop(run.name, None)
        self.finished[run.name] = run.record

    async def _cancel(self, run: ActiveRun, why: str) -> None:
        await self._stop(run)
        run.record = self.runs.update(run.record.id, status="cancelled", pid=None,
                                      finished_at=time.time(), message=why)  # fmt: skip
        append_log(Path(run.record.log_path), f"run {run.record.id} cancelled: {why}")
        self.report(f"TrainingJob {run.name}: run {run.record.id} cancelled ({why})")
        self._lineage_event("ABORT", run, error=why)
        self.active.pop(run.name, None)

    def _lineage_event(
        self,
        event_type: EventType,
        run: ActiveRun,
        *,
        version: ModelVersion | None = None,
        error: str | None = None,
    ) -> None:
        """Tell the OpenLineage consumer, if one is configured (never waits for it)."""
        if self.lineage is None:
            return
        output = run.job.spec.output
        where = None
        if output is not None:
            try:
                where = _output_location(output.uri, run.base_dir)
            except PlatformError:
                where = output.uri
        self.lineage.emit(
            event_type, run.record, run.job.spec.inputs or [], output=where, version=version,
            error=error,
        )  # fmt: skip

    async def _stop(self, run: ActiveRun) -> None:
        process = run.process
        if process is None or process.returncode is not None:
            return
        process.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
        except TimeoutError:
            process.signal(signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                await process.wait()
        run.process = None


def newest_checkpoint(directory: Path, since: float) -> Path | None:
    """The newest entry of ``directory`` written at or after ``since`` (hidden ones skipped)."""
    newest: tuple[float, Path] | None = None
    try:
        entries = list(directory.iterdir())
    except OSError:
        return None
    for entry in entries[:10_000]:
        if entry.name.startswith("."):
            continue
        try:
            mtime = entry.stat().st_mtime
        except OSError:
            continue
        if mtime >= since - 1.0 and (newest is None or mtime > newest[0]):
            newest = (mtime, entry)
    return newest[1] if newest else None


def _resolve_dir(value: str | None, base_dir: Path) -> Path | None:
    if not value:
        return None
    path = Path(value.removeprefix("file://")).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def _output_location(uri: str, base_dir: Path) -> str:
    """Where the job writes its artifact, as it is told (``KAIP_OUTPUT_URI``)."""
    if uri.startswith("s3://"):
        from kaip.serving import s3

        try:
            s3.split(uri)
        except KaipError as exc:
            raise PlatformError(f"output.uri: {exc.message}") from None
        return uri
    if "://" in uri and not uri.startswith("file://"):
        raise PlatformError(
            f"output.uri {uri!r}: kaip up and kaip train write to a local path or to "
            "s3://BUCKET/KEY"
        )
    path = Path(uri.removeprefix("file://")).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())


def _status(record: RunRecord, progress: float | None) -> dict[str, object]:
    return {
        "job": record.job,
        "run": record.id,
        "revision": record.revision,
        "status": record.status,
        "attempt": record.attempt,
        "attempts": record.max_retries + 1,
        "progress": progress,
        "exit_code": record.exit_code,
        "message": record.message,
        "version": f"{record.version_name}@{record.version}" if record.version else None,
        "log": record.log_path,
    }


async def run_to_end(
    runner: TrainingRunner,
    job: TrainingJob,
    revision: str,
    source: Path,
    commit_sha: str | None,
    *,
    on_tick: Callable[[RunRecord, float | None], None] = lambda record, progress: None,
    tick_seconds: float = 0.2,
) -> RunRecord:
    """Run ``job`` once, in the foreground, to success or failure (``kaip train``).

    Always a new run, whatever ran before. Cancellation (Ctrl-C) stops the attempt and marks
    the run cancelled.
    """
    name = job.metadata.name
    run = runner._new_run(job, revision, source, commit_sha)
    runner.active[name] = run
    await runner._start(run)
    try:
        while name in runner.active:
            await runner.tick()
            current = runner.active.get(name)
            if current is not None:
                on_tick(current.record, current.progress)
            await asyncio.sleep(tick_seconds)
    except asyncio.CancelledError:
        current = runner.active.get(name)
        if current is not None:
            await runner._cancel(current, "stopped by the user")
        raise
    record = runner.finished[name]
    on_tick(record, record.progress)
    return record

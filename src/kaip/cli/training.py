"""Training and the registry from the command line: ``kaip train|jobs|models``.

``kaip train PATH`` runs one TrainingJob in the foreground (its output above a progress bar)
and registers what it made; ``kaip jobs`` lists runs and ``kaip models`` the registry, both read
straight from ``.kaip/registry.db`` (or the MLflow server, ``KAIP_REGISTRY__BACKEND=mlflow``), so
they work with or without a ``kaip up`` running. Parse,
call, print: the runner is :mod:`kaip.local.controller.training`.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from kaip.cli.local import source_commit
from kaip.cli.output import OutputFormat, output_option, print_data, stdout
from kaip.errors import ConfigError, PlatformError
from kaip.local.controller.training import TrainingRunner, run_to_end
from kaip.local.state import Commit
from kaip.plan import revision_id
from kaip.registry import (
    EmbeddedRegistry,
    ModelVersion,
    Registry,
    RunRecord,
    RunStore,
    lineage_events,
    split_reference,
)
from kaip.registry.backends import open_registry
from kaip.settings import load_settings
from kaip.spec import TrainingJob, load_paths

models_app = typer.Typer(
    help="Registered models: versions, details, aliases.", no_args_is_help=True
)


def _registry() -> Registry:
    """The registry this kaip is configured for (KAIP_REGISTRY__BACKEND): kaip's or MLflow's."""
    settings = load_settings()
    embedded = EmbeddedRegistry.open(settings.local.state_dir.resolve())
    if settings.registry.backend == "embedded":
        return embedded
    embedded.close()
    return open_registry(embedded, settings.registry)


def train(
    paths: list[Path] = typer.Argument(..., help="spec files or directories"),
    name: str | None = typer.Option(None, "--name", help="the TrainingJob to run"),
) -> None:
    """Run one TrainingJob in the foreground, with retries, and register its output."""
    specs = load_paths(paths)
    jobs = [d for d in specs.of_kind("TrainingJob") if isinstance(d.resource, TrainingJob)]
    names = [d.resource.metadata.name for d in jobs]
    if name is not None:
        jobs = [d for d in jobs if d.resource.metadata.name == name]
    if len(jobs) != 1:
        where = ", ".join(map(str, paths))
        if not names:
            raise ConfigError(f"no TrainingJob in {where}")
        if name is not None:
            raise ConfigError(f"no TrainingJob named {name!r} in {where} (there: {names})")
        raise ConfigError(f"{where} has {len(names)} TrainingJobs {names}: pick one with --name")
    doc = jobs[0]
    job = doc.resource
    assert isinstance(job, TrainingJob)
    settings = load_settings()
    state_dir = settings.local.state_dir.resolve()
    embedded = EmbeddedRegistry.open(state_dir)
    commit = source_commit(paths)
    try:
        registry = open_registry(embedded, settings.registry)
        try:
            record = _run(job, doc.path, state_dir, embedded, registry, commit)
        finally:
            registry.close()
    finally:
        embedded.close()
    if record.status != "succeeded":
        raise PlatformError(
            f"TrainingJob {job.metadata.name}: run {record.id} {record.status}: {record.message}"
            f" (log: {record.log_path})"
        )


def _run(
    job: TrainingJob,
    source: Path,
    state_dir: Path,
    embedded: EmbeddedRegistry,
    registry: Registry,
    commit: Commit | None,
) -> RunRecord:
    sha = commit.sha if commit else None
    lines: list[str] = []
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[state]}"),
        console=stdout,
        transient=False,
    ) as bar:
        task = bar.add_task(job.metadata.name, total=1.0, state="starting")
        lineage = lineage_events.from_environment(os.environ, lines.append)
        runner = TrainingRunner(
            RunStore(embedded.db), registry, state_dir / "logs" / "jobs", report=lines.append,
            lineage=lineage,
        )  # fmt: skip
        tail = _Tail()

        def on_tick(record: RunRecord, progress: float | None) -> None:
            for line in lines:
                bar.console.print(f"[dim]{datetime.now():%H:%M:%S}[/] {line}", highlight=False)
            lines.clear()
            for line in tail.read(Path(record.log_path)):
                bar.console.print(line, markup=False, highlight=False)
            state = f"run {record.id} attempt {record.attempt}/{record.max_retries + 1}"
            bar.update(task, completed=progress or 0.0, state=f"{state} {record.status}")

        try:
            return asyncio.run(
                run_to_end(runner, job, revision_id(job), source, sha, on_tick=on_tick)
            )
        finally:
            if lineage is not None:
                lineage.close(lineage_events.CLOSE_SECONDS)
                for line in lines:
                    bar.console.print(line, markup=False, highlight=False)


class _Tail:
    """New lines of a growing file, from where the last read stopped."""

    def __init__(self) -> None:
        self.offsets: dict[Path, int] = {}
        self.partial = ""

    def read(self, path: Path) -> list[str]:
        try:
            with path.open("rb") as handle:
                handle.seek(self.offsets.get(path, 0))
                data = handle.read(1 << 20)
                self.offsets[path] = handle.tell()
        except OSError:
            return []
        text = self.partial + data.decode(errors="replace")
        lines = text.split("\n")
        self.partial = lines.pop()
        return lines


def jobs(
    job: str | None = typer.Argument(None, help="only the runs of this TrainingJob"),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="newest runs shown"),
    output: OutputFormat = output_option(),
) -> None:
    """List training runs, newest first: status, attempts, progress, exit code, version."""
    runs = EmbeddedRegistry.open(load_settings().local.state_dir.resolve())
    try:
        records = RunStore(runs.db).list(job, limit)
    finally:
        runs.close()
    if output.structured:
        print_data(output, [_run_json(r) for r in records])
        return
    if not records:
        stdout.print("no training runs yet: `kaip train PATH`, or a TrainingJob under `kaip up`")
        return
    stdout.print(
        f"{'RUN':>5}  {'JOB':<24} {'STATUS':<11} {'ATTEMPT':<8} {'PROGRESS':>8}  {'EXIT':>5}  "
        f"{'STARTED':<19}  {'TOOK':>7}  VERSION",
        markup=False,
    )
    for r in records:
        took = (r.finished_at or time.time()) - r.started_at
        progress = "-" if r.progress is None else f"{r.progress:.0%}"
        version = f"{r.version_name}@{r.version}" if r.version else "-"
        stdout.print(
            f"{r.id:>5}  {r.job:<24} {r.status:<11} {r.attempt}/{r.max_retries + 1:<6} "
            f"{progress:>8}  {'-' if r.exit_code is None else r.exit_code:>5}  "
            f"{datetime.fromtimestamp(r.started_at):%Y-%m-%d %H:%M:%S}  {took:>6.0f}s  {version}",
            markup=False,
        )


def _run_json(r: RunRecord) -> dict[str, Any]:
    return {
        "run": r.id,
        "job": r.job,
        "revision": r.revision,
        "status": r.status,
        "attempt": r.attempt,
        "attempts": r.max_retries + 1,
        "progress": r.progress,
        "exit_code": r.exit_code,
        "message": r.message,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "commit": r.commit_sha,
        "resumed_from": r.resumed_from,
        "pid": r.pid,
        "metrics": dict(r.metrics),
        "params": dict(r.params),
        "version": f"{r.version_name}@{r.version}" if r.version else None,
        "log": r.log_path,
    }


def version_json(v: ModelVersion) -> dict[str, Any]:
    return {
        "name": v.name,
        "version": v.version,
        "uri": v.reference,
        "aliases": list(v.aliases),
        "sha256": v.digest,
        "format": v.format,
        "size": v.size,
        "storage": v.storage_uri,
        "created_at": v.created_at,
        "metrics": dict(v.metrics),
        "params": dict(v.params),
        "commit": v.source_commit,
        "job": v.job,
        "run": v.run_id,
    }


@models_app.command("list")
def models_list(
    output: OutputFormat = output_option(),
) -> None:
    """Every registered model with its latest version."""
    registry = _registry()
    try:
        latest = [registry.versions(name)[-1] for name in registry.names()]
    finally:
        registry.close()
    if output.structured:
        print_data(output, [version_json(v) for v in latest])
        return
    for v in latest:
        stdout.print(f"{v.name:<32} latest {v.version:<4} {v.format:<10} {v.reference}",
                     markup=False)  # fmt: skip
    if not latest:
        stdout.print("no registered models yet: a TrainingJob with output registers one")


@models_app.command("versions")
def models_versions(
    name: str = typer.Argument(..., help="registered model name"),
    output: OutputFormat = output_option(),
) -> None:
    """The versions of NAME, oldest first, with their metrics, aliases and origin."""
    registry = _registry()
    try:
        versions = registry.versions(name)
        if not versions:
            registry.resolve(name, "latest")  # raises with what there is
    finally:
        registry.close()
    if output.structured:
        print_data(output, [version_json(v) for v in versions])
        return
    for v in versions:
        metrics = ", ".join(f"{k}={val:g}" for k, val in sorted(v.metrics.items())) or "-"
        aliases = f" [{', '.join(v.aliases)}]" if v.aliases else ""
        origin = f"job {v.job} run {v.run_id}" if v.job else "registered by hand"
        stdout.print(
            f"{v.version:>4}{aliases}  {datetime.fromtimestamp(v.created_at):%Y-%m-%d %H:%M:%S}"
            f"  sha256 {v.digest[:12]}  {v.size:>10} B  {origin}  {metrics}",
            markup=False,
        )


@models_app.command("show")
def models_show(
    reference: str = typer.Argument(..., help="NAME@VERSION, NAME@ALIAS or NAME (latest)"),
    output: OutputFormat = output_option(),
) -> None:
    """Everything recorded about one version."""
    name, selector = split_reference(reference)
    registry = _registry()
    try:
        version = registry.resolve(name, selector)
    finally:
        registry.close()
    data = version_json(version)
    if output.structured:
        print_data(output, data)
        return
    data["created_at"] = f"{datetime.fromtimestamp(version.created_at):%Y-%m-%d %H:%M:%S}"
    for key, value in data.items():
        if isinstance(value, dict | list):
            value = ", ".join(
                f"{k}={v}" for k, v in value.items()
            ) if isinstance(value, dict) else ", ".join(map(str, value))  # fmt: skip
        stdout.print(f"{key + ':':<12} {value if value not in (None, '') else '-'}", markup=False)


@models_app.command("alias")
def models_alias(
    name: str = typer.Argument(..., help="registered model name"),
    alias: str = typer.Argument(..., help="alias, e.g. champion"),
    version: int = typer.Argument(..., help="version number it names from now on"),
) -> None:
    """Point ALIAS of NAME at VERSION (a Model reading registry://NAME@ALIAS follows it)."""
    registry = _registry()
    try:
        registry.set_alias(name, alias, version)
    finally:
        registry.close()
    stdout.print(f"{name}@{alias} -> version {version}", markup=False)


def register(app: typer.Typer) -> None:
    """Add the training and registry commands to the ``kaip`` CLI."""
    app.command()(train)
    app.command()(jobs)
    app.add_typer(models_app, name="models")

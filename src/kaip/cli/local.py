"""The local platform's commands: ``kaip up|down|deploy|status|logs``.

``kaip up`` runs the control plane in this process (or, with ``--detach``, in a background one
and returns once everything is ready); the other commands talk to it over its admin API on the
control port, through :mod:`kaip.cli.admin_client`. Parse, call, print: the decisions live in
:mod:`kaip.local.controller`.
"""

from __future__ import annotations

import getpass
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import typer
from rich.markup import escape

from kaip.cli import admin_client
from kaip.cli.output import OutputFormat, note_skipped, output_option, print_data, stderr, stdout
from kaip.cli.rollout_wait import (
    DEFAULT_TIMEOUT,
    Target,
    parse_timeout,
)
from kaip.cli.rollout_wait import wait as wait_for_rollouts
from kaip.errors import PlatformError
from kaip.local.controller import RUN_FILE, find_running
from kaip.local.controller.runrecord import ProcessIdentity
from kaip.local.private import open_private, private_dir
from kaip.local.state import Commit
from kaip.settings import Settings, load_settings
from kaip.spec import load_paths

DETACH_TIMEOUT_SECONDS = 180.0


def who() -> str:
    """The person behind a change: git's user.name, else $USER."""
    try:
        name = subprocess.run(
            ["git", "config", "user.name"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        name = ""
    if name:
        return name
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def source_commit(paths: list[Path]) -> Commit | None:
    """HEAD of the git repository holding the first spec path, for lead-time records."""
    first = paths[0].resolve() if paths else Path.cwd()
    where = first if first.is_dir() else first.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "log", "-1", "--format=%H %ct"],
            capture_output=True, text=True, timeout=5,
        ).stdout.split()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if len(out) != 2 or not out[1].isdigit():
        return None
    return Commit(out[0], float(out[1]))


def _say(line: str) -> None:
    stdout.print(f"[dim]{datetime.now():%H:%M:%S}[/] {line}", markup=True, highlight=False)


def up(
    paths: list[Path] = typer.Argument(..., help="spec files or directories"),
    port: int | None = typer.Option(None, "--port", "-p", help="traffic port (default 8080)"),
    admin_port: int | None = typer.Option(
        None, "--admin-port", help="control port: the admin API, never Apps (default 8081; 0: any)"
    ),
    allowed_host: list[str] = typer.Option(
        [], "--allowed-host", help="another name the control port answers to (repeatable)"
    ),
    detach: bool = typer.Option(False, "--detach", "-d", help="run in the background"),
) -> None:
    """Run models and apps locally behind one gateway port; Ctrl-C (or `kaip down`) stops."""
    from kaip.local.controller import check_local, serve  # the platform: only `up` loads it
    from kaip.portal.local import local_portal

    settings = load_settings()
    specs = load_paths(paths)  # a bad spec stops here, before anything starts
    note_skipped(specs)
    notices = check_local(specs)
    gateway_port = settings.local.gateway_port if port is None else port
    control_port = settings.local.admin_port if admin_port is None else admin_port
    running = find_running(settings.local.state_dir).record
    if running is not None:
        raise PlatformError(
            f"kaip is already running here (pid {running.pid}, {running.url}): "
            "use `kaip deploy PATH` to change what runs, or `kaip down` first"
        )
    if detach:
        for notice in notices:  # in the foreground, serve() reports them
            _say(notice)
        _detach(paths, gateway_port, control_port, allowed_host, settings)
        return
    from kaip.serving.server import run_loop  # kaip up's path only: it loads the model server

    commit = source_commit(paths)
    run_loop(
        serve(
            paths,
            settings,
            who=who(),
            port=gateway_port,
            report=_say,
            commit=commit,
            admin_port=control_port,
            allowed_hosts=allowed_host,
            portal=local_portal,
        )
    )


def _detach(
    paths: list[Path], port: int, admin_port: int, allowed_hosts: list[str], settings: Settings
) -> None:
    state_dir = settings.local.state_dir
    log_path = private_dir(state_dir / "logs") / "kaip-up.log"
    argv = [
        sys.executable, "-m", "kaip.cli", "up", *map(str, paths),
        "--port", str(port), "--admin-port", str(admin_port),
        *(arg for host in allowed_hosts for arg in ("--allowed-host", host)),
    ]  # fmt: skip
    with open_private(log_path) as log:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "COLUMNS": "160"},
        )  # fmt: skip
    stdout.print(f"starting kaip in the background (pid {child.pid}, log {log_path})")
    deadline = time.monotonic() + DETACH_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if child.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise PlatformError("kaip up stopped while starting:\n" + "\n".join(tail))
        running = find_running(state_dir).record
        if running is not None and running.pid == child.pid:
            try:
                status = admin_client.call(settings, "GET", "/api/v1/status")
            except PlatformError:
                status = {}
            if status.get("ready"):
                _print_status(status)
                stdout.print("\nstop it with: kaip down")
                return
        time.sleep(0.3)
    raise PlatformError(
        f"kaip up did not become ready within {DETACH_TIMEOUT_SECONDS:.0f}s; it is still "
        f"running (pid {child.pid}): see `kaip status` and {log_path}, stop it with `kaip down`"
    )


def down() -> None:
    """Stop the running `kaip up` and everything it started."""
    settings = load_settings()
    state_dir = settings.local.state_dir
    lookup = find_running(state_dir)
    record = lookup.record
    if record is None:
        stdout.print(f"kaip is not running here ({lookup.reason})", markup=False)
        if (state_dir / RUN_FILE).exists() and "another process" in lookup.reason:
            stdout.print(f"left it alone; removing the stale {state_dir / RUN_FILE}", markup=False)
            (state_dir / RUN_FILE).unlink(missing_ok=True)
        return
    pid = record.pid
    try:
        process = psutil.Process(pid)
        # psutil refuses to signal a pid that was reused since `process` was made, and the start
        # time and command line are checked once more against this very handle.
        now = ProcessIdentity(pid, process.create_time(), tuple(process.cmdline()))
        if not now.same_as(record.process):
            stdout.print(f"kaip is not running here (pid {pid} is now another process)")
            return
        process.terminate()
    except psutil.NoSuchProcess:
        stdout.print("stopped")
        return
    except psutil.AccessDenied as exc:
        raise PlatformError(f"cannot signal kaip (pid {pid}): {exc}") from None
    stdout.print(f"stopping kaip (pid {pid}): draining replicas")
    deadline = time.monotonic() + settings.local.drain_seconds + 30
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:  # exited; its parent has yet to reap it
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    else:
        raise PlatformError(f"kaip (pid {pid}) did not stop in time; kill it with `kill -9 {pid}`")
    stdout.print("stopped")


def deploy(
    paths: list[Path] = typer.Argument(..., help="spec files or directories"),
    wait: bool = typer.Option(
        False, "--wait", help="follow the rollouts to their end; exit 0 only if all reach 100%"
    ),
    timeout: str = typer.Option(
        DEFAULT_TIMEOUT, "--timeout", help="with --wait: give up after this long (90s, 10m, 1h)"
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="show the revision each resource would get and its spec diff"
    ),
    output: OutputFormat = output_option(),
) -> None:
    """Add a revision of each changed resource and start its rollout.

    With --wait, exit 0 only when every new revision reached 100% (a first deploy: ready);
    4 when one was rolled back, 5 aborted or superseded, 6 still running at --timeout.
    With --dry-run, change nothing: print what would happen and the diff of each spec.
    """
    settings = load_settings()
    timeout_seconds = parse_timeout(timeout)
    load_paths(paths)  # a bad spec is refused here and changes nothing
    body: dict[str, Any] = {"paths": [str(p.resolve()) for p in paths], "who": who()}
    if dry_run:
        answer = admin_client.call(
            settings, "POST", "/api/v1/deployments", {**body, "dry_run": True}
        )
        if output.structured:
            print_data(output, answer)
            return
        for line in answer.get("changes", []):
            stdout.print(line, markup=False)
        for item in answer.get("plan", []):
            stdout.print(item["message"], markup=False)
            if item["diff"] and item["action"] != "unchanged":
                stdout.print(item["diff"], markup=False, end="", highlight=False)
        return
    commit = source_commit(paths)
    if commit is not None:
        body["commit"] = {"sha": commit.sha, "committed_at": commit.committed_at}
    answer = admin_client.call(settings, "POST", "/api/v1/deployments", body)
    if output.structured and not wait:
        print_data(output, answer)
        return
    for line in answer.get("changes", []):
        stdout.print(line, markup=False)
    if not wait:
        stdout.print("follow a rollout with: kaip rollout status NAME --watch")
        return
    targets = [
        Target(str(r["kind"]), str(r["name"]), r.get("rollout_id"))
        for r in answer.get("rollouts", [])
    ]
    follow(settings, targets, timeout_seconds)


def follow(settings: Settings, targets: list[Target], timeout_seconds: float) -> None:
    """Wait for ``targets`` (see :mod:`kaip.cli.rollout_wait`); Ctrl-C stops watching, not them."""
    try:
        wait_for_rollouts(
            targets,
            lambda name: admin_client.call(settings, "GET", f"/api/v1/rollouts/{name}"),
            _say,
            timeout_seconds=timeout_seconds,
        )
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def status(
    output: OutputFormat = output_option(),
) -> None:
    """Show resources, revisions and weights, replicas and URLs."""
    answer = admin_client.call(load_settings(), "GET", "/api/v1/status")
    if output.structured:
        print_data(output, answer)
    else:
        _print_status(answer)


def logs(
    name: str = typer.Argument(..., help="Model, App or TrainingJob name"),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new lines"),
) -> None:
    """Print the logs of every replica of NAME, or of a job's latest run (-f: keep following)."""
    log_dir = load_settings().local.state_dir / "logs"
    pattern = re.compile(rf"^{re.escape(name)}-[0-9a-f]{{6}}-\d+\.log$")
    run_pattern = re.compile(rf"^{re.escape(name)}-(\d+)\.log$")
    offsets: dict[Path, int] = {}

    def replica_logs() -> list[Path]:
        if not log_dir.is_dir():
            return []
        found = sorted(p for p in log_dir.iterdir() if pattern.match(p.name))
        job_dir = log_dir / "jobs"
        runs = [
            (int(m.group(1)), p)
            for p in (job_dir.iterdir() if job_dir.is_dir() else ())
            if (m := run_pattern.match(p.name))
        ]
        if runs:  # a job: its latest run (a new run is picked up while following)
            found.append(max(runs)[1])
        return found

    def emit() -> None:
        for path in replica_logs():
            with path.open("rb") as handle:
                handle.seek(offsets.get(path, 0))
                data = handle.read()
                offsets[path] = handle.tell()
            prefix = path.stem
            for line in data.decode(errors="replace").splitlines():
                sys.stdout.write(f"{prefix} | {line}\n")
        sys.stdout.flush()

    if not replica_logs():
        raise PlatformError(f"no logs for {name!r} in {log_dir}: check the name with `kaip status`")
    emit()
    while follow:
        try:
            time.sleep(0.3)
        except KeyboardInterrupt:
            return
        emit()


def register(app: typer.Typer) -> None:
    """Add the local platform's commands to the ``kaip`` CLI."""
    for command in (up, down, deploy, status, logs):
        app.command()(command)


def _print_status(answer: dict[str, Any]) -> None:
    stdout.print(f"kaip on {answer['gateway']} (pid {answer['pid']})", markup=False)
    for trouble in answer.get("degraded", []):
        since = datetime.fromtimestamp(trouble["since"]).strftime("%H:%M:%S")
        stdout.print(
            f"[bold red]DEGRADED[/] since {since}: {trouble['what']} failed "
            f"{trouble['failures']} time(s): {escape(trouble['message'])}",
            highlight=False,
        )
    for resource in answer["resources"]:
        weights = ", ".join(f"{rev} {w}%" for rev, w in resource["weights"].items())
        stdout.print(
            f"\n[bold]{resource['kind']} {resource['name']}[/]  {resource['url']}\n"
            f"  revisions: {weights}   desired replicas: {resource['desired']}",
            highlight=False,
        )
        if resource.get("rollout"):
            r = resource["rollout"]
            verdict = (r.get("verdict") or {}).get("reason", "starting")
            stdout.print(f"  rollout {r['from']} -> {r['to']}: step {r['step']}: {verdict}",
                         markup=False)  # fmt: skip
        for revision, source in (resource.get("source") or {}).items():
            made = f" from job {source['job']} run {source['run']}" if source.get("job") else ""
            stdout.print(f"  {revision} serves {source['version']}{made}", markup=False)
        for replica in resource["replicas"]:
            stdout.print(
                f"  {replica['id']:<28} pid {replica['pid'] or '-':<8} port "
                f"{replica['port'] or '-':<6} {replica['health']}"
                + (f" (restarts {replica['restarts']})" if replica["restarts"] else ""),
                markup=False,
            )
    for job in answer.get("jobs", []):
        progress = "" if job["progress"] is None else f" {job['progress']:.0%}"
        stdout.print(
            f"\n[bold]TrainingJob {job['job']}[/]  run {job['run']} {job['status']}{progress} "
            f"(attempt {job['attempt']}/{job['attempts']})"
            + (f": {escape(job['message'])}" if job["message"] else ""),
            highlight=False,
        )
    if not answer["resources"] and not answer.get("jobs"):
        stderr.print("no resources")

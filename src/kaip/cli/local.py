"""The local platform's commands: ``kaip up|down|deploy|status|logs|rollout``.

``kaip up`` runs the control plane in this process (or, with ``--detach``, in a background one
and returns once everything is ready); the other commands talk to it over its admin API on the
gateway port, found through ``.kaip/run.json``. Parse, call, print: the decisions live in
:mod:`kaip.local.controller`.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import typer

from kaip.cli.output import OutputFormat, print_json, stderr, stdout
from kaip.errors import ConfigError, PlatformError
from kaip.local.controller import read_run_file, serve
from kaip.local.state import Commit
from kaip.settings import Settings, load_settings
from kaip.spec import load_paths

DETACH_TIMEOUT_SECONDS = 180.0
rollout_app = typer.Typer(help="Watch, promote or abort a rollout.", no_args_is_help=True)


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
    port: int | None = typer.Option(None, "--port", "-p", help="gateway port (default 8080)"),
    detach: bool = typer.Option(False, "--detach", "-d", help="run in the background"),
) -> None:
    """Run models and apps locally behind one gateway port; Ctrl-C (or `kaip down`) stops."""
    settings = load_settings()
    load_paths(paths)  # a bad spec stops here, before anything starts
    gateway_port = settings.local.gateway_port if port is None else port
    state_dir = settings.local.state_dir
    running = read_run_file(state_dir)
    if running is not None:
        raise PlatformError(
            f"kaip is already running here (pid {running['pid']}, {running.get('url')}): "
            "use `kaip deploy PATH` to change what runs, or `kaip down` first"
        )
    if detach:
        _detach(paths, gateway_port, settings)
        return
    commit = source_commit(paths)
    asyncio.run(serve(paths, settings, who=who(), port=gateway_port, report=_say, commit=commit))


def _detach(paths: list[Path], port: int, settings: Settings) -> None:
    state_dir = settings.local.state_dir
    log_path = state_dir / "logs" / "kaip-up.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "kaip.cli", "up", *map(str, paths), "--port", str(port)]
    with log_path.open("ab") as log:
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
        running = read_run_file(state_dir)
        if running is not None and running.get("pid") == child.pid:
            try:
                status = _admin("GET", "/_kaip/status", settings=settings)
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
    running = read_run_file(settings.local.state_dir)
    if running is None:
        stdout.print("kaip is not running here")
        return
    pid = int(str(running["pid"]))
    os.kill(pid, signal.SIGTERM)
    stdout.print(f"stopping kaip (pid {pid}): draining replicas")
    deadline = time.monotonic() + settings.local.drain_seconds + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stdout.print("stopped")
            return
        time.sleep(0.2)
    raise PlatformError(f"kaip (pid {pid}) did not stop in time; kill it with `kill -9 {pid}`")


def deploy(paths: list[Path] = typer.Argument(..., help="spec files or directories")) -> None:
    """Add a revision of each changed resource and start its rollout."""
    settings = load_settings()
    load_paths(paths)  # a bad spec is refused here and changes nothing
    body: dict[str, Any] = {"paths": [str(p.resolve()) for p in paths], "who": who()}
    commit = source_commit(paths)
    if commit is not None:
        body["commit"] = {"sha": commit.sha, "committed_at": commit.committed_at}
    answer = _admin("POST", "/_kaip/deploy", body, settings=settings)
    for line in answer.get("changes", []):
        stdout.print(line, markup=False)
    stdout.print("follow a rollout with: kaip rollout status NAME --watch")


def status(
    output: OutputFormat = typer.Option(OutputFormat.text, "--output", "-o", help="text or json"),
) -> None:
    """Show resources, revisions and weights, replicas and URLs."""
    answer = _admin("GET", "/_kaip/status", settings=load_settings())
    if output is OutputFormat.json:
        print_json(answer)
    else:
        _print_status(answer)


def logs(
    name: str = typer.Argument(..., help="Model or App name"),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new lines"),
) -> None:
    """Print the logs of every replica of NAME (with -f, keep following them)."""
    log_dir = load_settings().local.state_dir / "logs"
    pattern = re.compile(rf"^{re.escape(name)}-[0-9a-f]{{6}}-\d+\.log$")
    offsets: dict[Path, int] = {}

    def replica_logs() -> list[Path]:
        if not log_dir.is_dir():
            return []
        return sorted(p for p in log_dir.iterdir() if pattern.match(p.name))

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


@rollout_app.command("status")
def rollout_status(
    name: str = typer.Argument(..., help="Model or App name"),
    watch: bool = typer.Option(False, "--watch", "-w", help="print changes until it ends"),
) -> None:
    """Where the rollout of NAME stands, and its past verdicts (with -w, follow it to the end)."""
    settings = load_settings()
    answer = _admin("GET", f"/_kaip/rollouts/{name}", settings=settings)
    _print_rollout(name, answer, history=True)
    last = _progress_key(answer)
    while watch and (answer.get("resource") or {}).get("rollout"):
        try:
            time.sleep(0.5)
        except KeyboardInterrupt:
            return
        answer = _admin("GET", f"/_kaip/rollouts/{name}", settings=settings)
        key = _progress_key(answer)
        if key != last:
            if (answer.get("resource") or {}).get("rollout"):
                _say(_rollout_line(answer))
            else:
                _print_rollout(name, answer, history=False)
            last = key


def _progress_key(answer: dict[str, Any]) -> str:
    """The rollout line without its ticking counters: a change here is news."""
    return re.sub(r"\d+s of|\d+ of minRequests", "", _rollout_line(answer))


def _rollout_line(answer: dict[str, Any]) -> str:
    resource = answer.get("resource") or {}
    current = resource.get("rollout")
    if not current:
        return ""
    verdict = current.get("verdict") or {}
    return (
        f"step {current['step']}/{len(current['steps'])} weights {resource['weights']}: "
        f"{verdict.get('action', 'waiting')}: {verdict.get('reason', 'canary starting')}"
    )


def _print_rollout(name: str, answer: dict[str, Any], *, history: bool) -> None:
    resource = answer.get("resource") or {}
    current = resource.get("rollout")
    if current:
        stdout.print(
            f"{resource['kind']} {name}: {current['from']} -> {current['to']} "
            f"({current['strategy']}), steps {current['steps']}",
            markup=False,
        )
        canary = current["canary"]
        stdout.print(
            f"  {_rollout_line(answer)} "
            f"(canary this step: {canary['requests']} requests, {canary['errors']} errors)",
            markup=False,
        )
    else:
        stdout.print(f"{name}: no rollout in progress (stable {resource.get('stable')})")
    for past in answer.get("history", [])[: 5 if history else 1]:
        stdout.print(
            f"  #{past['id']} {past['from_revision']} -> {past['to_revision']}: {past['status']}"
            + (f" ({past['reason']})" if past["reason"] else ""),
            markup=False,
        )


@rollout_app.command("promote")
def rollout_promote(name: str = typer.Argument(..., help="Model or App name")) -> None:
    """Promote the canary of NAME to stable now, skipping the remaining steps."""
    answer = _admin("POST", f"/_kaip/rollouts/{name}/promote", {"who": who()})
    stdout.print(answer["message"], markup=False)


@rollout_app.command("abort")
def rollout_abort(name: str = typer.Argument(..., help="Model or App name")) -> None:
    """Stop the rollout of NAME and send all traffic back to the stable revision."""
    answer = _admin("POST", f"/_kaip/rollouts/{name}/abort", {"who": who()})
    stdout.print(answer["message"], markup=False)


def register(app: typer.Typer) -> None:
    """Add the local platform's commands to the ``kaip`` CLI."""
    for command in (up, down, deploy, status, logs):
        app.command()(command)
    app.add_typer(rollout_app, name="rollout")


def _admin(
    method: str, path: str, body: dict[str, Any] | None = None, *, settings: Settings | None = None
) -> dict[str, Any]:
    """Call the running kaip's admin API; a refusal becomes a PlatformError with its message."""
    settings = settings or load_settings()
    running = read_run_file(settings.local.state_dir)
    if running is None:
        raise PlatformError(
            f"kaip is not running here (no live {settings.local.state_dir}/run.json): "
            "start it with `kaip up PATH`"
        )
    url = f"{running['url']}{path}"
    try:
        response = httpx.request(method, url, json=body, timeout=30.0, trust_env=False)
    except httpx.HTTPError as exc:
        raise PlatformError(f"cannot reach kaip at {running['url']}: {exc}") from None
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text}
    if response.status_code == 422 and "problems" in data:
        raise ConfigError("\n".join(data["problems"]))
    if response.status_code >= 400:
        raise PlatformError(str(data.get("error", response.text)))
    return dict(data)


def _print_status(answer: dict[str, Any]) -> None:
    stdout.print(f"kaip on {answer['gateway']} (pid {answer['pid']})", markup=False)
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
        for replica in resource["replicas"]:
            stdout.print(
                f"  {replica['id']:<28} pid {replica['pid'] or '-':<8} port "
                f"{replica['port'] or '-':<6} {replica['health']}"
                + (f" (restarts {replica['restarts']})" if replica["restarts"] else ""),
                markup=False,
            )
    if not answer["resources"]:
        stderr.print("no resources")

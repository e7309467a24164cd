"""``kaip up`` as one function: wire state, supervisor, gateway and controller, then run.

Validates the spec before anything starts (a bad spec raises :class:`~kaip.errors.SpecError` and
nothing runs), opens ``.kaip/``, binds the gateway, writes ``.kaip/run.json`` (pid, port, URL)
for the other CLI commands, and runs the controller until SIGTERM or SIGINT, then drains every
replica. Signal handlers only ask the loop to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from kaip.errors import PlatformError
from kaip.local.controller.admin import admin_app
from kaip.local.controller.loop import Controller, ControllerConfig
from kaip.local.gateway import Gateway
from kaip.local.state import Commit, State
from kaip.local.supervisor import Supervisor, Timings, kill_orphans
from kaip.settings import Settings
from kaip.spec import load_paths

RUN_FILE = "run.json"
PID_FILE = "replicas.json"


def read_run_file(state_dir: Path) -> dict[str, object] | None:
    """What the running ``kaip up`` wrote about itself, if it is still alive."""
    path = state_dir / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return None
    return dict(data)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def serve(
    paths: Sequence[str | Path],
    settings: Settings,
    *,
    who: str,
    port: int,
    report: Callable[[str], None],
    commit: Commit | None = None,
) -> None:
    """Run the local platform for ``paths`` until a signal; raise before starting on a bad spec."""
    specs = load_paths(paths)
    local = settings.local
    state_dir = local.state_dir.resolve()
    running = read_run_file(state_dir)
    if running is not None:
        raise PlatformError(
            f"kaip is already running here (pid {running['pid']}, {running.get('url')}): "
            "use `kaip deploy PATH` to change what runs, or `kaip down` first"
        )
    state = State.open(state_dir)
    pid_file = state_dir / PID_FILE
    orphans = kill_orphans(pid_file)
    if orphans:
        report(f"stopped {orphans} replica(s) left running by a kaip that did not shut down")
    controller: Controller | None = None
    supervisor = Supervisor(
        state_dir / "logs",
        on_change=lambda: controller.wake() if controller else None,
        pid_file=pid_file,
        timings=Timings(
            health_interval=local.health_interval_seconds,
            drain_timeout=local.drain_seconds,
        ),
    )
    config = ControllerConfig(
        state_dir=state_dir,
        gateway_url="",
        tick_seconds=local.tick_seconds,
        stabilization_seconds=local.stabilization_seconds,
    )
    controller = Controller(config, state, supervisor, report=report)
    gateway = Gateway(
        host="127.0.0.1",
        port=port,
        hold_timeout_s=local.hold_timeout_seconds,
        response_timeout_s=local.response_timeout_seconds,
        limits=local.gateway_http,
        app_max_request_bytes=local.app_max_request_bytes,
        on_demand=controller.wake,
        admin=admin_app(controller),
    )
    try:
        bound = await gateway.start()
    except OSError as exc:
        state.close()
        raise PlatformError(
            f"cannot listen on 127.0.0.1:{port} ({exc.strerror}): is another kaip up or "
            "service using it? Pick another with `kaip up --port N`"
        ) from None
    url = f"http://127.0.0.1:{bound}"
    controller.config = replace(config, gateway_url=url)
    controller.gateway = gateway
    run_file = state_dir / RUN_FILE
    run_file.write_text(
        json.dumps({"pid": os.getpid(), "port": bound, "url": url, "started_at": time.time()}),
        encoding="utf-8",
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, controller.stop)
    report(f"gateway listening on {url}")
    try:
        for line in await controller.apply(specs, who, commit):
            report(line)
        await controller.run()
    finally:
        report("stopping: draining replicas")
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await gateway.stop()
        state.close()
        with contextlib.suppress(OSError):
            run_file.unlink()
        report("stopped")

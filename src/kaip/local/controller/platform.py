"""``kaip up`` as one function: wire state, supervisor, gateway, control port and controller.

Validates the spec before anything starts (a bad spec raises :class:`~kaip.errors.SpecError` and
nothing runs), opens ``.kaip/`` (0700: the state database and the model registry), binds the
gateway (traffic) and the control port (the admin API behind its guard, with this run's admin
token), writes ``.kaip/run.json`` for the other CLI commands, and runs the controller until
SIGTERM or SIGINT, then drains every replica and stops every training run (resumable).
Signal handlers only ask the loop to stop.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from kaip.accounting.prices import NODE_TYPE_ENV
from kaip.errors import ConfigError, KaipError, PlatformError
from kaip.local.controller.auth import FirstOf, admin_token_authenticator
from kaip.local.controller.control import ControlServer
from kaip.local.controller.control_port import PortalFactory, control_port_app
from kaip.local.controller.costs import (
    SNAPSHOT_EVERY_S,
    CostBook,
    ReplicaProcess,
    coefficients_from,
    cpu_model,
    price_book_from,
)
from kaip.local.controller.gpu_energy import gpu_energy_meter
from kaip.local.controller.guard import GuardPolicy, normalize_hosts
from kaip.local.controller.loop import Controller, ControllerConfig
from kaip.local.controller.pinning import RemotePinning
from kaip.local.controller.preflight import check_local
from kaip.local.controller.runrecord import (
    TOKEN_FILE,
    find_running,
    new_admin_token,
    remove_run_record,
    this_process_record,
    write_run_record,
)
from kaip.local.controller.sessions import SessionStore
from kaip.local.controller.tokens import RoleTokenAuthenticator
from kaip.local.controller.training import TrainingRunner
from kaip.local.gateway import Gateway
from kaip.local.state import Commit, FileClock, State
from kaip.local.supervisor import Supervisor, Timings, kill_orphans
from kaip.registry import EmbeddedRegistry, RunStore, lineage_events
from kaip.registry.backends import open_registry
from kaip.serving.artifacts import fetch_limits
from kaip.settings import Settings
from kaip.spec import load_paths
from kaip.spec.base import parse_quantity
from kaip.telemetry.spans import SpanRecorder

PID_FILE = "replicas.json"


def already_running(state_dir: Path) -> PlatformError | None:
    """The error to raise if a ``kaip up`` already runs in ``state_dir``."""
    running = find_running(state_dir).record
    if running is None:
        return None
    return PlatformError(
        f"kaip is already running here (pid {running.pid}, {running.url}): "
        "use `kaip deploy PATH` to change what runs, or `kaip down` first"
    )


async def serve(
    paths: Sequence[str | Path],
    settings: Settings,
    *,
    who: str,
    port: int,
    report: Callable[[str], None],
    commit: Commit | None = None,
    admin_port: int | None = None,
    allowed_hosts: Sequence[str] = (),
    portal: PortalFactory,
) -> None:
    """Run the local platform for ``paths`` until a signal; raise before starting on a bad spec.

    ``admin_port`` and ``allowed_hosts`` (added to the settings' own) are the control port's;
    ``portal`` builds what it serves besides the admin API.
    """
    specs = load_paths(paths)
    for notice in check_local(specs):
        report(notice)
    local = settings.local
    admin_port = local.admin_port if admin_port is None else admin_port
    try:
        names = normalize_hosts([*local.allowed_hosts, *allowed_hosts])
    except ValueError as exc:
        raise ConfigError(f"--allowed-host: {exc}") from None
    state_dir = local.state_dir.resolve()
    running = already_running(state_dir)
    if running is not None:
        raise running
    coefficients = coefficients_from(os.environ, cpu_model())  # bad settings: before any start
    prices = price_book_from(os.environ, coefficients.prices)
    clock = FileClock(local.wall_clock_file) if local.wall_clock_file else time.time
    state = State.open(state_dir, clock)
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
    tracer, shutdown_otel = _tracer()
    config = ControllerConfig(
        state_dir=state_dir,
        gateway_url="",
        tick_seconds=local.tick_seconds,
        stabilization_seconds=local.stabilization_seconds,
        profile_token=secrets.token_urlsafe(32),  # per run, in memory and the replicas' env only
        models_start_no_traces=tracer is not None,  # the gateway decides for every request
        remote_pinning=RemotePinning(
            settings.serving.artifact_cache_dir, fetch_limits(settings.serving)
        ),
    )
    embedded = EmbeddedRegistry.open(state_dir)
    try:
        registry = open_registry(embedded, settings.registry)
    except KaipError:
        embedded.close()
        state.close()
        raise
    lineage = lineage_events.from_environment(os.environ, report)
    training = TrainingRunner(
        RunStore(embedded.db),
        registry,
        state_dir / "logs" / "jobs",
        report=report,
        on_change=lambda: controller.wake() if controller else None,
        on_registered=lambda version: controller.registered(version) if controller else None,
        lineage=lineage,
    )
    controller = Controller(
        config, state, supervisor, report=report, registry=registry, training=training
    )
    gateway = Gateway(
        host="127.0.0.1",
        port=port,
        hold_timeout_s=local.hold_timeout_seconds,
        response_timeout_s=local.response_timeout_seconds,
        limits=local.gateway_http,
        app_max_request_bytes=local.app_max_request_bytes,
        on_demand=controller.wake,
        tracer=tracer,
        models_start_no_traces=config.models_start_no_traces,
    )
    costs = CostBook(
        coefficients,
        replicas=lambda: _replica_processes(controller, supervisor),
        busy=gateway.signals.replica_busy if gateway.signals is not None else dict,
        prices=prices,
        node_type=os.environ.get(NODE_TYPE_ENV) or None,
        gpu=gpu_energy_meter(),
    )
    if gateway.signals is not None:
        gateway.signals.replica_phases = lambda: _replica_phases(controller, supervisor)
        gateway.signals.accounting = costs.counters
        gateway.signals.request_cost = costs.per_request
    controller.costs = costs
    token = new_admin_token(state_dir)
    role_tokens = RoleTokenAuthenticator(state_dir)
    policy = GuardPolicy(
        allowed_hosts=names,
        credential_hint=(
            f"send 'Authorization: Bearer TOKEN' with the token in {state_dir / TOKEN_FILE} "
            "(the kaip CLI does this for you)"
        ),
    )
    bearer = FirstOf([admin_token_authenticator(token), role_tokens])
    sessions = SessionStore(revoked=role_tokens.revoked)
    control = ControlServer(
        control_port_app(
            controller,
            bearer,
            policy,
            portal(controller, bearer, policy, sessions, str(state_dir / TOKEN_FILE)),
            costs=costs,
        ),
        port=admin_port,
    )
    try:
        bound = await _bind(gateway.start, port, "--port")
        try:
            admin_bound = await _bind(control.start, admin_port, "--admin-port")
        except PlatformError:
            await gateway.stop()
            raise
    except PlatformError:
        state.close()
        registry.close()
        embedded.close()
        (state_dir / TOKEN_FILE).unlink(missing_ok=True)
        raise
    url = f"http://127.0.0.1:{bound}"
    admin_url = f"http://127.0.0.1:{admin_bound}"
    controller.config = replace(config, gateway_url=url)
    controller.gateway = gateway
    gateway.control_url = admin_url
    record = this_process_record(port=bound, url=url, admin_port=admin_bound, admin_url=admin_url)
    write_run_record(state_dir, record)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, controller.stop)
    report(f"gateway listening on {url}, control API on {admin_url}")
    readings = asyncio.create_task(_cost_readings(costs, report))
    try:
        for line in await controller.apply(specs, who, commit):
            report(line)
        controller.applied = True
        await controller.run()
    finally:
        readings.cancel()
        report("stopping: draining replicas")
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await control.stop()
        await gateway.stop()
        state.close()
        registry.close()
        embedded.close()
        if lineage is not None:
            await asyncio.to_thread(lineage.close, lineage_events.CLOSE_SECONDS)
        remove_run_record(state_dir, record)
        if shutdown_otel is not None:
            shutdown_otel()
        report("stopped")


async def _cost_readings(costs: CostBook, report: Callable[[str], None]) -> None:
    """Keep the cost book's readings for ``kaip cost --since`` (one a minute)."""
    while True:
        try:
            costs.snapshot()
        except Exception as exc:  # a reading is worth a retry, never kaip up's life
            report(f"cost reading failed (kaip cost --since may cover more): {exc!r}")
        await asyncio.sleep(SNAPSHOT_EVERY_S)


def _tracer() -> tuple[SpanRecorder | None, Callable[[], None] | None]:
    """The gateway's span recorder, exporting by OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is
    set (sampled as ``OTEL_TRACES_SAMPLER`` says, see kaip.telemetry.otel)."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None, None
    from kaip.telemetry.otel import configure

    telemetry = configure("kaip-gateway")
    return telemetry.spans, telemetry.shutdown


def _replica_processes(controller: Controller, supervisor: Supervisor) -> Iterator[ReplicaProcess]:
    """Every replica with a live process, for the cost book."""
    runs = controller.resources
    for replica in supervisor.replicas():
        run = runs.get(replica.name)
        if run is None or replica.pid is None or replica.phase == "stopped":
            continue
        spec = run.current.resource.spec
        yield ReplicaProcess(
            kind=run.route_kind,
            resource=replica.name,
            revision=replica.revision,
            owner=spec.owner,
            replica=replica.id,
            pid=replica.pid,
            vcpus=parse_quantity(spec.resources.cpu),
            gpus=float(spec.resources.gpu),
        )


def _replica_phases(
    controller: Controller, supervisor: Supervisor
) -> Iterator[tuple[str, str, str, str]]:
    """``(resource, revision, owner, phase)`` of every replica, for the gateway's metrics."""
    owners = {name: run.current.resource.spec.owner for name, run in controller.resources.items()}
    for replica in supervisor.replicas():
        yield replica.name, replica.revision, owners.get(replica.name, ""), replica.phase


async def _bind(start: Callable[[], Awaitable[int]], port: int, flag: str) -> int:
    try:
        return await start()
    except OSError as exc:
        raise PlatformError(
            f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}): is another kaip up or "
            f"service using it? Pick another with `kaip up {flag} N`"
        ) from None

"""kaip.local.supervisor with real child processes on loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from kaip.local.supervisor import Launch, Supervisor, Timings, kill_orphans
from kaip.local.supervisor.jobs import kill_recorded
from kaip.local.supervisor.process import cmdline_of, start_ticks

FIXTURES = Path(__file__).parent / "fixtures"
FAST = Timings(backoff_initial=0.05, backoff_max=0.2, drain_timeout=5.0, health_timeout=1.0)

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def no_leftover_children(tmp_path: Path) -> Iterator[None]:
    """A failing test never leaves replicas running: the supervisor's own record finds them."""
    yield
    kill_orphans(tmp_path / "replicas.json")


def launch(**env: str) -> Launch:
    return Launch(
        name="tiny",
        revision="abcdef1234",
        argv=(sys.executable, str(FIXTURES / "tiny_server.py")),
        cwd=FIXTURES,
        env=env,
        health_path="/healthz",
    )


async def until(supervisor: Supervisor, condition: Callable[[], bool], limit: float = 60) -> None:
    """Tick the supervisor until ``condition`` holds; fail after ``limit`` seconds."""
    async with asyncio.timeout(limit):
        while not condition():
            await supervisor.tick()
            await asyncio.sleep(0.05)


def test_a_killed_replica_comes_back_on_a_new_process(tmp_path: Path) -> None:
    async def scenario() -> None:
        supervisor = Supervisor(
            tmp_path / "logs", timings=FAST, pid_file=tmp_path / "replicas.json"
        )
        replica = await supervisor.add(launch())
        await until(supervisor, lambda: replica.phase == "ready")
        first_pid = replica.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        await until(supervisor, lambda: replica.restarts == 1 and replica.phase == "ready")
        assert replica.pid != first_pid
        assert replica.last_exit == -signal.SIGKILL
        await supervisor.shutdown()
        assert supervisor.replicas() == []
        log = replica.log_path.read_text()
        assert log.count("serving on") == 2

    asyncio.run(scenario())


def test_a_replica_that_keeps_dying_is_reported_as_a_crash_loop(tmp_path: Path) -> None:
    async def scenario() -> None:
        supervisor = Supervisor(
            tmp_path / "logs", timings=FAST, pid_file=tmp_path / "replicas.json"
        )
        replica = await supervisor.add(launch(CRASH="1"))
        await until(supervisor, lambda: replica.phase == "crash-loop")
        assert replica.failures >= FAST.crash_loop_after
        assert replica.last_exit == 3
        assert "crash loop" in replica.describe()
        assert str(replica.log_path) in replica.describe()
        assert "crashing on purpose" in replica.log_path.read_text()
        await supervisor.shutdown()

    asyncio.run(scenario())


def test_drain_sends_sigterm_and_forgets_the_replica(tmp_path: Path) -> None:
    async def scenario() -> None:
        supervisor = Supervisor(
            tmp_path / "logs", timings=FAST, pid_file=tmp_path / "replicas.json"
        )
        keep = await supervisor.add(launch())
        gone = await supervisor.add(launch())
        await until(supervisor, lambda: keep.phase == "ready" and gone.phase == "ready")
        assert keep.port != gone.port
        supervisor.drain(gone.id)
        await until(supervisor, lambda: gone.phase == "stopped")
        assert [r.id for r in supervisor.replicas()] == [keep.id]
        assert "draining" in gone.log_path.read_text()
        assert gone.last_exit == 0
        await supervisor.shutdown()

    asyncio.run(scenario())


def test_replicas_left_by_a_dead_kaip_are_found_and_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "replicas.json"

    async def scenario() -> None:
        supervisor = Supervisor(tmp_path / "logs", timings=FAST, pid_file=pid_file)
        replica = await supervisor.add(launch())
        await until(supervisor, lambda: replica.phase == "ready")
        # As if kaip had been SIGKILLed: nobody drains; the next kaip finds the record.
        recorded = pid_file.read_text()
        assert kill_orphans(pid_file) == 1, (recorded, replica)
        await until(supervisor, lambda: replica.restarts >= 1)  # it really died
        pids = [entry["pid"] for entry in json.loads(pid_file.read_text())]
        assert pids == [replica.pid], (
            pids,
            replica,
        )  # the restarted process is recorded in its place
        await supervisor.shutdown()
        assert kill_orphans(pid_file) == 0  # a clean shutdown leaves nothing behind

    asyncio.run(scenario())


@pytest.fixture
def execs_after_start() -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line changes after it starts: ``sh`` that execs ``sleep``."""
    process = subprocess.Popen(["sh", "-c", "sleep 0.3; exec sleep 60"], start_new_session=True)
    yield process
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_for_cmdline(pid: int, want: str) -> None:
    deadline = time.monotonic() + 30
    while cmdline_of(pid) != want:
        assert time.monotonic() < deadline, cmdline_of(pid)
        time.sleep(0.02)


def test_a_recorded_replica_is_known_by_its_start_time_not_its_command_line(
    tmp_path: Path, execs_after_start: subprocess.Popen[bytes]
) -> None:
    """The record names a process by its start time, which exec leaves alone: a command line read
    as it starts (empty for an instant of its exec, or another program's before it) still finds
    it, and one whose pid now belongs to a later process is left alone."""
    pid = execs_after_start.pid
    started = start_ticks(pid)
    assert started is not None
    # the right field of /proc/PID/stat: what psutil works its start time out from
    since_boot = psutil.Process(pid).create_time() - psutil.boot_time()
    assert started / os.sysconf("SC_CLK_TCK") == pytest.approx(since_boot, abs=0.02)
    pid_file = tmp_path / "replicas.json"
    pid_file.write_text(json.dumps([{"pid": pid, "start_ticks": started + 1}]))  # a reused pid
    assert kill_orphans(pid_file) == 0
    assert execs_after_start.poll() is None
    wait_for_cmdline(pid, "sleep\x0060\x00")  # exec'd since the start time was read
    pid_file.write_text(json.dumps([{"pid": pid, "start_ticks": started}]))
    assert kill_orphans(pid_file) == 1
    assert execs_after_start.wait(timeout=30) == -signal.SIGKILL


def test_a_record_from_before_start_times_is_matched_by_its_command_line(
    tmp_path: Path, execs_after_start: subprocess.Popen[bytes]
) -> None:
    pid = execs_after_start.pid
    wait_for_cmdline(pid, "sleep\x0060\x00")
    pid_file = tmp_path / "replicas.json"
    pid_file.write_text(json.dumps([{"pid": pid, "cmdline": "sleep\x0061\x00"}, {"pid": "x"}]))
    assert kill_orphans(pid_file) == 0
    assert not pid_file.exists()  # read once, then gone
    pid_file.write_text(json.dumps([{"pid": pid, "cmdline": "sleep\x0060\x00"}]))
    assert kill_orphans(pid_file) == 1
    assert execs_after_start.wait(timeout=30) == -signal.SIGKILL


def test_a_training_attempt_is_known_by_its_start_time_too(
    execs_after_start: subprocess.Popen[bytes],
) -> None:
    pid = execs_after_start.pid
    started = start_ticks(pid)
    assert started is not None
    assert not kill_recorded(pid, started - 1)
    assert not kill_recorded(pid, None, "sh")  # an old record of another command line
    wait_for_cmdline(pid, "sleep\x0060\x00")
    assert kill_recorded(pid, started)
    assert execs_after_start.wait(timeout=30) == -signal.SIGKILL
    assert not kill_recorded(pid, started)  # gone


def test_a_launch_that_needs_longer_to_start_gets_its_own_patience(tmp_path: Path) -> None:
    """A Model whose engine loads weights first (``serve.engine.startupSeconds``) is not killed
    at the supervisor's usual startup timeout, only past its own (a fake clock drives both)."""
    now = [0.0]

    async def scenario() -> None:
        supervisor = Supervisor(
            tmp_path / "logs", timings=FAST, clock=lambda: now[0], pid_file=tmp_path / "r.json"
        )
        never_healthy = Launch(
            name="slow", revision="abcdef1234",
            argv=(sys.executable, str(FIXTURES / "tiny_server.py")), cwd=FIXTURES, env={},
            health_path="/unready", startup_timeout=FAST.startup_timeout + 600,
        )  # fmt: skip
        replica = await supervisor.add(never_healthy)
        now[0] = FAST.startup_timeout + 1  # past the usual patience
        for _ in range(5):
            await supervisor.tick()
            await asyncio.sleep(0.05)
        assert replica.phase == "starting" and replica.restarts == 0
        now[0] = FAST.startup_timeout + 601  # past its own
        await until(supervisor, lambda: replica.last_exit == -signal.SIGKILL)
        await supervisor.shutdown()

    asyncio.run(scenario())

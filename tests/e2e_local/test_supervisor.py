"""kaip.local.supervisor with real child processes on loopback ports."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kaip.local.supervisor import Launch, Supervisor, Timings, kill_orphans

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

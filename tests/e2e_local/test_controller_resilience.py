"""A failing controller tick never stops ``kaip up`` (issue 11 #8), on a real process tree.

The review found that any error inside a tick ended the platform: ``state.db`` locked by another
process for 35 s during a canary (``OperationalError: database is locked``), or a full disk
(``ENOSPC`` recording replica pids), and every later request failed; ``kaip deploy`` on a full
disk printed only "Internal Server Error". Here the same faults are made for real -- a second
SQLite connection holding the write lock, a tmpfs filled to the last byte -- while requests flow.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_platform import Load, LocalPlatform, model_spec, wait_for

# A hang bound, not a timing check (a run passed in 2 min, another timed out at 5 at load 30,
# when every wait polled `kaip status` through a CLI start of its own).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SLOW_START = 300.0  # s: a replica (the canary, a restart) starting on a machine at load 30
FAST_STEPS = "[{weight: 50, pauseSeconds: 1}, {weight: 100, pauseSeconds: 1}]"
# The canary's first write is its first step's end, 20 s after its replica is ready: the lock,
# taken once `kaip deploy` exits, comes well before it (the deploy CLI's exit alone took 8 s
# under load, and a 1 s step was promoted before the lock). A minute here only made the test
# wait for the write, and then for the promotion.
LOCKED_STEPS = "[{weight: 50, pauseSeconds: 20}, {weight: 100, pauseSeconds: 1}]"


def troubles(platform: LocalPlatform) -> list[dict[str, object]]:
    return list(platform.status().get("degraded", []))


def test_a_locked_state_db_during_a_canary_degrades_and_recovers_without_a_failed_request(
    platform: LocalPlatform,
) -> None:
    spec = platform.write_spec(model_spec(steps=FAST_STEPS, min_requests=5))
    platform.up(spec)
    load = Load(f"{platform.url}/v2/models/echo/infer").start()
    wait_for(lambda: load.counts()[0] >= 20, "traffic on the stable revision")
    platform.write_spec(
        model_spec(entrypoint="model:HealthyV2", steps=LOCKED_STEPS, min_requests=5)
    )
    assert platform.cli("deploy", str(spec)).returncode == 0
    lock = sqlite3.connect(platform.workdir / ".kaip" / "state.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        assert platform.rollouts("echo")[0]["status"] != "promoted", "locked too late"
        # The first write that fails is the canary's first step: after its replica has started.
        wait_for(
            lambda: any("locked" in str(t["message"]) for t in troubles(platform)),
            "kaip status to show the locked database",
            limit=SLOW_START,
        )
        text = platform.cli("status")
        assert text.returncode == 0 and "DEGRADED" in text.stdout and "locked" in text.stdout
        refused = platform.cli("deploy", str(spec))
        assert refused.returncode == 1, refused.stdout
        assert "state.db is locked by another process" in refused.stderr
        assert "Internal Server Error" not in refused.stderr + refused.stdout
        served = load.counts()[0]
        wait_for(lambda: load.counts()[0] >= served + 30, "requests served while locked")
        assert platform.process is not None and platform.process.poll() is None
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    wait_for(
        lambda: platform.rollouts("echo")[0]["status"] == "promoted", "the promotion", SLOW_START
    )
    wait_for(lambda: troubles(platform) == [], "the trouble to clear")
    ok, failed = load.stop()
    print(f"\nlocked state.db: {ok} requests ok, {failed} failed")
    assert failed == 0, load.failures[:5]
    assert "works again" in platform.log.read_text()


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:  # CI runs as root; a skip would hide the test (tests/conftest)
        pytest.fail(f"this test mounts a tmpfs to fill, which needs root: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Write to ``disk`` until it is full; returns the filler file."""
    filler = disk / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return filler


def test_a_full_disk_keeps_serving_says_why_and_recovers(platform: LocalPlatform) -> None:
    with small_disk(platform.workdir / ".kaip", "16m") as disk:
        spec = platform.write_spec(model_spec())
        platform.up(spec)
        replica = platform.resource("echo")["replicas"][0]
        filler = fill(disk)

        platform.write_spec(model_spec(entrypoint="model:HealthyV2"))
        refused = platform.cli("deploy", str(spec))
        assert refused.returncode == 1, refused.stdout
        assert "full" in refused.stderr.lower() or "no space left" in refused.stderr.lower()
        assert "Internal Server Error" not in refused.stderr + refused.stdout

        os.kill(replica["pid"], signal.SIGKILL)  # its restart must record pids: ENOSPC
        wait_for(
            lambda: any("No space left" in str(t["message"]) for t in troubles(platform)),
            "kaip status to say the disk is full",
            limit=SLOW_START,
        )

        def serving() -> bool:
            replicas = platform.resource("echo")["replicas"]
            return bool(replicas) and replicas[0]["restarts"] >= 1 and replicas[0]["routed"]

        wait_for(serving, "the killed replica to come back on a full disk", SLOW_START)
        load = Load(f"{platform.url}/v2/models/echo/infer").start()
        wait_for(lambda: load.counts()[0] >= 30, "requests served on a full disk")
        assert platform.process is not None and platform.process.poll() is None

        restarted = platform.resource("echo")["replicas"][0]["pid"]
        filler.unlink()
        wait_for(lambda: troubles(platform) == [], "the trouble to clear once there is space")
        recorded = [entry["pid"] for entry in json.loads((disk / "replicas.json").read_text())]
        assert restarted in recorded  # the record caught up once there was room
        assert platform.cli("deploy", str(spec)).returncode == 0
        ok, failed = load.stop()
        print(f"\nfull disk: {ok} requests ok, {failed} failed after the restart")
        assert failed == 0, load.failures[:5]
        platform.down()

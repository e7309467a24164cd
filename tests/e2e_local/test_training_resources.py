"""A local TrainingJob's resources, applied where the OS can (best effort), through the CLI only.

``kaip train`` runs the job as ``kaip up`` does (:mod:`kaip.local.supervisor.jobs`):
``resources.cpu`` pins it to that many of the CPUs kaip may use (``sched_setaffinity``, and
``OMP_NUM_THREADS``), ``resources.memory`` becomes its ``RLIMIT_DATA``. Both are applied in
the child before exec, so the job's first instruction already runs under them (the jobs below
read them at once). A job allocating past its memory limit fails inside itself
(MemoryError) and the run's status names the limit. Real processes; every check reads what the
CLI prints (``kaip jobs -o json``, ``kaip logs``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from local_platform import LocalPlatform

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs sched_getaffinity and at least 2 usable CPUs",
)

AFFINITY = """\
import os

print("cpus", len(os.sched_getaffinity(0)), "threads", os.environ.get("OMP_NUM_THREADS"))
"""
AT_EXEC = """\
apiVersion: kaip.dev/v1alpha1
kind: TrainingJob
metadata: {name: at-exec}
spec:
  owner: e2e
  command: [grep, -hE, "^(Max data size|Cpus_allowed_list)", /proc/self/limits, /proc/self/status]
  resources: {cpu: "1", memory: 256Mi}
  maxRetries: 0
"""
HUNGRY = """\
print("allocating 512 MiB", flush=True)
ballast = bytearray(512 * 2**20)
print("allocated", len(ballast))
"""
JOB = """\
apiVersion: kaip.dev/v1alpha1
kind: TrainingJob
metadata: {{name: {name}}}
spec:
  owner: e2e
  command: [python, {script}]
  resources: {{cpu: "{cpu}", memory: {memory}}}
  maxRetries: 0
"""


def train(platform: LocalPlatform, name: str, script: str, cpu: str, memory: str) -> Any:
    platform.spec_dir.mkdir(parents=True, exist_ok=True)
    (platform.spec_dir / f"{name}.py").write_text(script, encoding="utf-8")
    spec = platform.spec_dir / f"{name}.yaml"
    spec.write_text(
        JOB.format(name=name, script=f"{name}.py", cpu=cpu, memory=memory), encoding="utf-8"
    )
    return platform.cli("train", str(spec))


def run_of(platform: LocalPlatform, name: str) -> dict[str, Any]:
    listed = platform.cli("jobs", name, "--output", "json")
    assert listed.returncode == 0, listed.stderr
    [run] = json.loads(listed.stdout)
    return dict(run)


def test_a_job_with_one_cpu_runs_pinned_to_one_of_the_cpus(platform: LocalPlatform) -> None:
    done = train(platform, "pinned", AFFINITY, cpu="1", memory="1Gi")
    assert done.returncode == 0, done.stdout + done.stderr
    assert run_of(platform, "pinned")["status"] == "succeeded"
    log = platform.cli("logs", "pinned")
    assert log.returncode == 0, log.stderr
    assert "cpus 1 threads 1" in log.stdout, log.stdout
    assert "limits (best effort): cpus " in log.stdout, "the log says what was applied"


def test_the_limits_are_in_place_when_the_job_s_command_begins(platform: LocalPlatform) -> None:
    """A command that reads its limits the instant it runs (grep, no interpreter to start)
    already finds both: they are set between fork and exec, not from outside afterwards."""
    platform.spec_dir.mkdir(parents=True, exist_ok=True)
    spec = platform.spec_dir / "at-exec.yaml"
    spec.write_text(AT_EXEC, encoding="utf-8")
    done = platform.cli("train", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr
    log = platform.cli("logs", "at-exec").stdout
    lines = [line.partition(" | ")[2] for line in log.splitlines()]  # "at-exec-1 | ..."
    [data] = [line.split() for line in lines if line.startswith("Max data size")]
    assert data[3:5] == [str(256 * 2**20)] * 2, log  # soft and hard
    [cpus] = [line.split()[1] for line in lines if line.startswith("Cpus_allowed_list")]
    assert cpus.isdigit(), log  # one CPU, not a range or a list


def test_a_job_over_its_memory_limit_fails_and_its_status_names_the_limit(
    platform: LocalPlatform,
) -> None:
    done = train(platform, "hungry", HUNGRY, cpu="1", memory="128Mi")
    assert done.returncode != 0, done.stdout
    run = run_of(platform, "hungry")
    assert (run["status"], run["exit_code"]) == ("failed", 1), run
    message = run["message"]
    assert "out of memory: over its limit resources.memory 128Mi" in message, message
    assert f"RLIMIT_DATA {128 * 2**20} bytes" in message, message
    said = done.stdout + done.stderr
    assert "resources.memory 128Mi" in said, said
    log = platform.cli("logs", "hungry").stdout
    assert "allocating 512 MiB" in log and "MemoryError" in log and "allocated" not in log

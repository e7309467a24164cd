"""Training in the same plane, end to end through the CLI only.

A TrainingJob trains the quickstart's digits model (``examples/quickstart/train.py``, the real
scikit-learn training) with another hyperparameter under ``kaip up``; kaip registers its output
as version 2 and the Model, which reads ``registry://digits@latest``, rolls version 2 out as a
canary under real traffic and promotes it. A job whose reported accuracy is below the Model's
quality gate registers version 3, which never gets a replica or a request. A job killed by
SIGKILL mid-run resumes from the checkpoint it wrote (``examples/training/train_sgd.py``). Every
check reads what the CLI prints (``kaip jobs|models|status|logs -o json``) or the gateway
answers; nothing is asserted about timing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from local_platform import Load, LocalPlatform, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # real trainings on a shared box

EXAMPLES = Path(__file__).parents[2] / "examples"
DIGIT = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4,
         12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10,
         12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]  # fmt: skip
DIGIT_BODY = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": DIGIT}]}

MODEL = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: digits}
spec:
  owner: e2e
  artifact: {uri: "registry://digits@latest", format: sklearn, trust: true}
  qualityGate: {minMetric: {accuracy: 0.95}}
  scaling: {minReplicas: 1, maxReplicas: 1}
  rollout:
    steps: [{weight: 10, pauseSeconds: 1}, {weight: 50, pauseSeconds: 1},
            {weight: 100, pauseSeconds: 1}]
    gates: {maxErrorRate: 0.05, minRequests: 10}
"""


def job(name: str, c: str, *, model: str = "digits") -> str:
    return f"""\
apiVersion: kaip.dev/v1alpha1
kind: TrainingJob
metadata: {{name: {name}}}
spec:
  owner: e2e
  command: [python, train.py]
  env: {{C: "{c}"}}
  maxRetries: 1
  output: {{uri: out/{name}.joblib, format: sklearn, model: {model}}}
"""


def write(platform: LocalPlatform, file: str, text: str) -> Path:
    platform.spec_dir.mkdir(parents=True, exist_ok=True)
    path = platform.spec_dir / file
    path.write_text(text, encoding="utf-8")
    return path


def cli_json(platform: LocalPlatform, *args: str) -> Any:
    result = platform.cli(*args, "--output", "json")
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def dry_run(platform: LocalPlatform) -> list[dict[str, Any]]:
    answer = cli_json(platform, "deploy", "--dry-run", str(platform.spec_dir / "model.yaml"))
    return list(answer["plan"])


def run_of(platform: LocalPlatform, job_name: str) -> dict[str, Any]:
    runs = cli_json(platform, "jobs", job_name)
    assert runs, f"no run of {job_name} yet"
    return dict(runs[0])


def latest(platform: LocalPlatform, job_name: str) -> dict[str, Any]:
    """The job's latest run under kaip up as ``kaip status`` shows it ({} before one starts):
    what a wait polls, read from the control API rather than a CLI process per look."""
    jobs = [j for j in platform.status().get("jobs", []) if j["job"] == job_name]
    return dict(jobs[0]) if jobs else {}


def finished(platform: LocalPlatform, job_name: str) -> bool:
    return latest(platform, job_name).get("status") in ("succeeded", "failed")


def test_a_job_registers_version_2_which_rolls_out_and_a_job_below_the_gate_never_serves(
    platform: LocalPlatform,
) -> None:
    platform.spec_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "quickstart" / "train.py", platform.spec_dir / "train.py")
    # Version 1: the quickstart's hyperparameter, trained in the foreground.
    first = platform.cli("train", str(write(platform, "v1.yaml", job("digits-c1", "1.0"))))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "registered digits version 1" in first.stdout
    platform.up(write(platform, "model.yaml", MODEL))
    v1 = platform.resource("digits")
    assert v1["source"][v1["stable"]]["version"] == "registry://digits@1"
    # A dry run pins the registry version as a deploy would: nothing to roll out.
    [plan] = dry_run(platform)
    assert (plan["action"], plan["revision"]) == ("unchanged", v1["stable"]), plan

    load = Load(f"{platform.url}/v2/models/digits/infer", body=DIGIT_BODY).start()
    try:
        # Version 2: another hyperparameter, run by kaip up, delivered as a canary.
        deployed = platform.cli("deploy", str(write(platform, "v2.yaml", job("digits-c01", "0.1"))))
        assert deployed.returncode == 0, deployed.stderr
        wait_for(lambda: finished(platform, "digits-c01"), "the digits-c01 run to finish", 600)
        run = run_of(platform, "digits-c01")
        assert (run["status"], run["version"]) == ("succeeded", "digits@2"), run
        assert run["params"] == {"C": "0.1"} and run["metrics"]["accuracy"] >= 0.95

        def promoted() -> bool:
            resource = platform.resource("digits")
            source = resource["source"].get(resource["stable"]) or {}
            return resource["canary"] is None and source.get("version") == "registry://digits@2"

        wait_for(promoted, "version 2 to be promoted", 600)
        history = platform.rollouts("digits")
        assert history[0]["status"] == "promoted", history[0]
        steps = [v["weight"] for v in history[0]["verdicts"]]
        assert steps[:2] == [10, 50], history[0]  # a canary, not a swap

        # Version 3: reported accuracy below the quality gate.
        stable = platform.resource("digits")["stable"]
        bad = platform.cli("deploy", str(write(platform, "v3.yaml", job("digits-bad", "0.001"))))
        assert bad.returncode == 0, bad.stderr
        wait_for(lambda: finished(platform, "digits-bad"), "the digits-bad run to finish", 600)
        assert run_of(platform, "digits-bad")["version"] == "digits@3"

        def refused() -> list[dict[str, Any]]:
            return [
                e
                for e in _events(platform)
                if e["outcome"] == "refused" and e["artifact_version"] == "registry://digits@3"
            ]

        wait_for(lambda: bool(refused()), "the refusal of version 3", 600)
        assert "accuracy 0.9" in refused()[0]["detail"] and "< 0.95" in refused()[0]["detail"]
        load.stop()
        resource = platform.resource("digits")
        assert (resource["stable"], resource["canary"]) == (stable, None)
        assert resource["weights"] == {stable: 100}
        assert {r["revision"] for r in resource["replicas"]} == {stable}
        assert len(platform.rollouts("digits")) == 1  # no rollout was ever started for v3
        ok, failed = load.counts()
        assert failed == 0 and ok > 0, load.failures[:5]
    finally:
        load.stop()

    versions = cli_json(platform, "models", "versions", "digits")
    assert [(v["version"], v["job"], v["params"]) for v in versions] == [
        (1, "digits-c1", {"C": "1.0"}),
        (2, "digits-c01", {"C": "0.1"}),
        (3, "digits-bad", {"C": "0.001"}),
    ]
    assert all(re.fullmatch(r"[0-9a-f]{64}", v["sha256"]) for v in versions)
    delivered = [
        e for e in _events(platform)
        if e["artifact_version"] == "registry://digits@2" and e["outcome"] == "promoted"
    ]  # fmt: skip
    assert delivered and delivered[0]["artifact_registered_at"] == versions[1]["created_at"]
    logs = platform.cli("logs", "digits-c01")
    assert "KAIP_METRIC accuracy" in logs.stdout and "registered digits version 2" in logs.stdout

    # Lineage through the CLI: job -> run -> version 2 -> the revision that took 100 %.
    [two] = cli_json(platform, "lineage", "digits@2")
    assert (two["job"], two["run"]["id"], two["run"]["status"]) == (
        "digits-c01",
        run["run"],
        "succeeded",
    )
    assert two["version"]["sha256"] == versions[1]["sha256"]
    [served] = two["revisions"]
    assert served["stable_now"] and served["rollouts"][0]["status"] == "promoted"
    assert {10, 50} <= {s["weight"] for s in served["rollouts"][0]["steps"]}
    [three] = cli_json(platform, "lineage", "digits@3")
    assert three["revisions"] == [] and [e["outcome"] for e in three["events"]] == ["refused"]
    [plan] = dry_run(platform)
    assert plan["action"] == "refuse" and "digits version 3" in plan["message"], plan
    text = platform.cli("lineage", "digits@2")
    assert text.returncode == 0 and "job       digits-c01" in text.stdout, text.stdout

    # The portal's catalog lists the jobs kaip up ran beside the Model, each with its latest
    # run's state and the version it registered; a job's page tails that run's log.
    bearer = {"Authorization": f"Bearer {platform.token}"}
    catalog = httpx.get(f"{platform.admin_url}/api/v1/resources", params={"q": "digits-"},
                        headers=bearer, trust_env=False, timeout=60).json()  # fmt: skip
    jobs = {r["name"]: r for r in catalog["items"]}
    assert set(jobs) == {"digits-c01", "digits-bad"}  # digits-c1 ran under kaip train
    assert (jobs["digits-c01"]["kind"], jobs["digits-c01"]["stable"]) == ("TrainingJob", "digits@2")
    assert (jobs["digits-c01"]["state"], jobs["digits-bad"]["stable"]) == ("succeeded", "digits@3")
    page = httpx.get(f"{platform.admin_url}/resources/digits-c01", headers=bearer,
                     trust_env=False, timeout=60).text  # fmt: skip
    assert "registered digits version 2" in page


def _events(platform: LocalPlatform) -> list[dict[str, Any]]:
    return list(platform.admin("GET", "/_kaip/events").json()["events"])


SGD_JOB = """\
apiVersion: kaip.dev/v1alpha1
kind: TrainingJob
metadata: {name: digits-sgd}
spec:
  owner: e2e
  command: [python, train_sgd.py]
  env: {EPOCHS: "8", HOLD_AT_EPOCH: "3"}
  maxRetries: 2
  checkpointDir: checkpoints
  output: {uri: out/sgd.joblib, format: sklearn, model: digits-sgd}
"""


def test_a_job_killed_by_sigkill_mid_run_resumes_from_its_checkpoint_and_finishes(
    platform: LocalPlatform,
) -> None:
    platform.spec_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "training" / "train_sgd.py", platform.spec_dir / "train_sgd.py")
    platform.up(write(platform, "kaip.yaml", SGD_JOB))
    checkpoints = platform.spec_dir / "checkpoints"

    def epochs_written() -> list[int]:
        names = os.listdir(checkpoints) if checkpoints.is_dir() else []
        return sorted(
            int(m.group(1)) for n in names if (m := re.fullmatch(r"epoch-(\d+)\.joblib", n))
        )

    # `kaip logs JOB -f` follows the run as it happens, across its attempts.
    follower = subprocess.Popen(
        [sys.executable, "-m", "kaip.cli", "logs", "digits-sgd", "-f"],
        cwd=platform.workdir, env=platform.env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    followed: list[str] = []
    reader = threading.Thread(target=lambda: followed.extend(follower.stdout or ()), daemon=True)
    reader.start()
    # The first attempt holds after its third checkpoint (HOLD_AT_EPOCH) until it is killed.
    wait_for(lambda: "holding at epoch 3 until killed" in "".join(followed),
             "kaip logs -f to show the first attempt holding at epoch 3", 600)  # fmt: skip
    run = run_of(platform, "digits-sgd")
    assert run["status"] == "running" and run["attempt"] == 1 and run["pid"], run
    written_before_kill = epochs_written()[-1]  # the attempt's last checkpoint
    os.kill(run["pid"], signal.SIGKILL)
    wait_for(lambda: latest(platform, "digits-sgd").get("attempt") == 2, "the retry", 600)
    wait_for(lambda: finished(platform, "digits-sgd"), "the run to finish after the kill", 600)
    wait_for(lambda: "registered digits-sgd version 1" in "".join(followed),
             "kaip logs -f to show the second attempt to its end", 600)  # fmt: skip
    follower.terminate()
    follower.wait(timeout=60)
    assert "resumed from checkpoint step 3" in "".join(followed)

    run = run_of(platform, "digits-sgd")
    assert (run["status"], run["attempt"], run["version"]) == ("succeeded", 2, "digits-sgd@1")
    logs = platform.cli("logs", "digits-sgd").stdout
    assert "attempt 1 ended: killed by SIGKILL" in logs
    resumed = re.search(r"resumed from checkpoint step (\d+)", logs)
    assert resumed, logs
    step = int(resumed.group(1))
    assert step == written_before_kill == 3, (written_before_kill, logs)
    assert f"resuming from {checkpoints / f'epoch-{step}.joblib'}" in logs
    assert run["resumed_from"] == str(checkpoints / f"epoch-{step}.joblib")
    first_attempt = logs.split("resumed from checkpoint step")[0]
    assert f"epoch {step}/8 checkpointed" in first_attempt
    after = logs.split("resumed from checkpoint step")[1]
    assert f"epoch {step + 1}/8 checkpointed" in after and "epoch 1/8" not in after


def test_kaip_train_retries_a_failing_job_then_exits_1_with_its_exit_code(
    platform: LocalPlatform,
) -> None:
    spec = write(
        platform,
        "fail.yaml",
        """\
apiVersion: kaip.dev/v1alpha1
kind: TrainingJob
metadata: {name: flaky}
spec:
  owner: e2e
  command: [python, -c, "import os, sys; print('attempt', os.environ['KAIP_ATTEMPT']); sys.exit(3)"]
  maxRetries: 1
""",
    )
    result = platform.cli("train", str(spec))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TrainingJob flaky: run 1 failed: exit code 3 on attempt 2/2" in result.stderr
    run = run_of(platform, "flaky")
    assert (run["status"], run["attempt"], run["exit_code"]) == ("failed", 2, 3)
    logs = platform.cli("logs", "flaky").stdout
    assert "attempt 1\n" in logs and "attempt 2\n" in logs
    missing = platform.cli("train", str(spec), "--name", "nope")
    assert missing.returncode == 2 and "no TrainingJob named 'nope'" in missing.stderr


MANUAL_AND_AUTO = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: digits}
spec:
  owner: e2e
  artifact: {uri: "registry://digits@latest", format: sklearn, trust: true}
  promotion: manual
  scaling: {minReplicas: 1, maxReplicas: 1}
  rollout: {steps: [{weight: 100}]}
---
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: digits-auto}
spec:
  owner: e2e
  artifact: {uri: "registry://digits@latest", format: sklearn, trust: true}
  scaling: {minReplicas: 1, maxReplicas: 1}
  rollout: {steps: [{weight: 100}]}
"""


def test_promotion_manual_keeps_serving_its_version_until_kaip_deploy(
    platform: LocalPlatform,
) -> None:
    """A version a job registers for a ``promotion: manual`` Model waits for ``kaip deploy``.

    ``digits-auto`` follows the same registered name with promotion auto: once it has started
    rolling out version 2, the controller has looked at the registry for both Models, so
    ``digits`` still on version 1 with no rollout is the manual promotion at work, not a slow
    follow. (Nothing sends traffic here, so a rollout is seen starting, not promoted.)
    """
    platform.spec_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "quickstart" / "train.py", platform.spec_dir / "train.py")
    first = platform.cli("train", str(write(platform, "v1.yaml", job("digits-c1", "1.0"))))
    assert first.returncode == 0, first.stdout + first.stderr
    models = write(platform, "models.yaml", MANUAL_AND_AUTO)
    platform.up(models)

    def serves(name: str, version: str) -> bool:
        resource = platform.resource(name)
        source = resource["source"].get(resource["stable"]) or {}
        return resource["canary"] is None and source.get("version") == version

    def offers(name: str, version: str) -> bool:  # a revision (stable or canary) of version
        return version in {s.get("version") for s in platform.resource(name)["source"].values()}

    assert serves("digits", "registry://digits@1") and serves("digits-auto", "registry://digits@1")
    manual_stable = platform.resource("digits")["stable"]

    # Version 2, registered by a job kaip up runs (it feeds Model digits).
    deployed = platform.cli("deploy", str(write(platform, "v2.yaml", job("digits-c01", "0.1"))))
    assert deployed.returncode == 0, deployed.stderr
    wait_for(lambda: finished(platform, "digits-c01"), "the digits-c01 run to finish", 600)
    assert run_of(platform, "digits-c01")["version"] == "digits@2"
    wait_for(lambda: offers("digits-auto", "registry://digits@2"),
             "digits-auto (promotion auto) to start rolling out version 2", 600)  # fmt: skip

    manual = platform.resource("digits")
    assert (manual["stable"], manual["canary"]) == (manual_stable, None), manual
    assert serves("digits", "registry://digits@1")
    assert not offers("digits", "registry://digits@2")
    assert {r["revision"] for r in manual["replicas"]} == {manual_stable}
    assert platform.rollouts("digits") == []

    # kaip deploy of the unchanged spec is the promotion: it pins version 2 and rolls it out.
    [plan] = [p for p in dry_run_of(platform, models) if p["name"] == "digits"]
    assert plan["action"] != "unchanged", plan
    promoted = platform.cli("deploy", str(models))
    assert promoted.returncode == 0, promoted.stderr
    wait_for(lambda: offers("digits", "registry://digits@2"),
             "digits to start rolling out version 2 after kaip deploy", 600)  # fmt: skip


def dry_run_of(platform: LocalPlatform, path: Path) -> list[dict[str, Any]]:
    return list(cli_json(platform, "deploy", "--dry-run", str(path))["plan"])

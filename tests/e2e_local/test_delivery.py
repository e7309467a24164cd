"""Daily deploys through a real ``kaip up``: retrained weights are a new revision and a rollout.

Timing is never asserted; deadlines only bound how long a test waits before it fails.
"""

from __future__ import annotations

import httpx
import pytest
from local_platform import INFER_BODY, Load, LocalPlatform, model_spec, wait_for

pytestmark = pytest.mark.slow


def retrain(platform: LocalPlatform, factor: float | None) -> None:
    """Overwrite the model's "weights" (its Python file) in place; the spec stays as it is.

    ``factor`` None retrains it badly: every prediction raises.
    """
    model = platform.spec_dir / "model.py"
    text = model.read_text(encoding="utf-8")
    if factor is None:
        new = text.replace(
            'return {"y": inputs["x"] * self.factor}', 'raise RuntimeError("retrained badly")', 1
        )
    else:
        new = text.replace("factor = 2.0", f"factor = {factor}", 1)
    assert new != text
    model.write_text(new, encoding="utf-8")


def predict(platform: LocalPlatform) -> list[float]:
    url = f"{platform.url}/v2/models/echo/infer"
    response = httpx.post(url, json=INFER_BODY, timeout=30, trust_env=False)
    assert response.status_code == 200, response.text
    return list(response.json()["outputs"][0]["data"])


def test_overwritten_weights_are_a_new_revision_that_goes_through_the_canary(
    platform: LocalPlatform,
) -> None:
    spec = platform.write_spec(model_spec())
    platform.up(spec)
    old = platform.resource("echo")["stable"]
    again = platform.cli("deploy", str(spec))
    assert again.returncode == 0, again.stderr
    assert f"unchanged at revision {old}" in again.stdout

    load = Load(f"{platform.url}/v2/models/echo/infer").start()
    wait_for(lambda: load.counts()[0] >= 30, "traffic on the stable revision")
    retrain(platform, 5.0)
    deployed = platform.cli("deploy", str(spec), "--wait", "--timeout", "5m")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "rolling out revision" in deployed.stdout and f"over {old}" in deployed.stdout
    assert ": promoted (all 3 steps passed" in deployed.stdout
    rollout = platform.rollouts("echo")[0]
    assert rollout["status"] == "promoted", rollout
    assert [v["weight"] for v in rollout["verdicts"]] == [10, 50, 100]
    new = rollout["to_revision"]
    assert new != old
    wait_for(
        lambda: {r["revision"] for r in platform.resource("echo")["replicas"]} == {new},
        "the old replicas to be drained",
    )
    _, failed = load.stop()
    assert failed == 0, load.failures[:5]
    assert predict(platform) == [5.0, 10.0, 15.0, 20.0]


def test_a_badly_retrained_model_is_rolled_back_and_wait_and_watch_exit_4(
    platform: LocalPlatform,
) -> None:
    spec = platform.write_spec(model_spec())
    platform.up(spec)
    stable = platform.resource("echo")["stable"]
    load = Load(f"{platform.url}/v2/models/echo/infer").start()
    wait_for(lambda: load.counts()[0] >= 30, "traffic on the stable revision")
    retrain(platform, None)
    deployed = platform.cli("deploy", str(spec), "--wait", "--timeout", "5m")
    load.stop()
    assert deployed.returncode == 4, deployed.stdout + deployed.stderr
    assert "Traceback" not in deployed.stderr
    assert f"Model echo: rollout {stable} -> " in deployed.stderr
    assert "rolled back: " in deployed.stderr and "maxErrorRate" in deployed.stderr
    assert ": rollback: " in deployed.stdout and "errors; stable " in deployed.stdout  # evidence
    assert platform.resource("echo")["stable"] == stable
    # the watch CI runs after a deploy judges that rollout too, though it ended before
    watched = platform.cli("rollout", "status", "echo", "--watch")
    assert watched.returncode == 4, watched.stdout + watched.stderr
    assert "rolled back" in watched.stderr


def test_a_canary_without_traffic_is_aborted_at_its_progress_deadline(
    platform: LocalPlatform,
) -> None:
    # the same deadline bounds how long the new revision may take to be ready: generous, so a
    # slow machine still gets to the step, where the missing traffic is what runs out of time
    deadline = "    progressDeadlineSeconds: 60\n    gates:"
    with_deadline = model_spec().replace("    gates:", deadline)
    spec = platform.write_spec(with_deadline)
    platform.up(spec)
    stable = platform.resource("echo")["stable"]
    retrain(platform, 5.0)  # a new revision, and no request is ever sent to it
    deployed = platform.cli("deploy", str(spec), "--wait", "--timeout", "5m")
    assert deployed.returncode == 5, deployed.stdout + deployed.stderr
    assert "aborted: no evidence by progressDeadlineSeconds 60 at 10%: 0 of minRequests 10" in (
        deployed.stderr
    )
    rollout = platform.rollouts("echo")[0]
    assert rollout["status"] == "aborted"
    assert [v["action"] for v in rollout["verdicts"]] == ["abort"]
    resource = platform.resource("echo")
    assert (resource["stable"], resource["canary"]) == (stable, None)

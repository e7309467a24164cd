"""Daily deploys through a real ``kaip up``: retrained weights are a new revision and a rollout.

Timing is never asserted; deadlines only bound how long a test waits before it fails.
"""

from __future__ import annotations

import httpx
import pytest
from local_platform import INFER_BODY, Load, LocalPlatform, model_spec, wait_for

pytestmark = pytest.mark.slow


def retrain(platform: LocalPlatform, factor: float) -> None:
    """Overwrite the model's "weights" (its Python file) in place; the spec stays as it is."""
    model = platform.spec_dir / "model.py"
    text = model.read_text(encoding="utf-8")
    model.write_text(text.replace("factor = 2.0", f"factor = {factor}", 1), encoding="utf-8")


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
    deployed = platform.cli("deploy", str(spec))
    assert deployed.returncode == 0, deployed.stderr
    assert "rolling out revision" in deployed.stdout and f"over {old}" in deployed.stdout
    watched = platform.cli("rollout", "status", "echo", "--watch")
    assert watched.returncode == 0, watched.stderr
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

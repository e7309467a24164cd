"""Mirroring through a real ``kaip up`` (issue 13 #5, must-show): at a weight-0 step with
``traffic.mirror`` the new revision gets a copy of every request while every answer a client
sees is byte-equal to stable's, and a badly retrained model is rolled back on the mirrored
evidence alone without one client error. Timing is never asserted.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from local_platform import INFER_BODY, LocalPlatform, model_spec
from test_delivery import deploy_badly_retrained, retrain

pytestmark = pytest.mark.slow

SHADOW = "[{weight: 0, pause: {}}, {weight: 100, pauseSeconds: 1}]"
MIRROR = "    traffic: {mirror: true}\n"
CANARY = [5.0, 10.0, 15.0, 20.0]


def test_every_request_is_mirrored_to_the_canary_and_every_answer_is_stables_byte_for_byte(
    platform: LocalPlatform,
) -> None:
    spec = platform.write_spec(model_spec(steps=SHADOW) + MIRROR)
    platform.up(spec)
    url = f"{platform.url}/v2/models/echo/infer"

    def infer(target: str = url) -> bytes:
        response = httpx.post(target, json=INFER_BODY, timeout=30, trust_env=False)
        assert response.status_code == 200, response.text
        return response.content

    stables = infer()  # the stable revision's answer, before any rollout
    assert infer() == stables
    retrain(platform, 5.0)
    deployed = platform.cli("deploy", str(spec))
    assert deployed.returncode == 0, deployed.stderr

    def rollout() -> dict[str, Any]:  # the admin API the CLI reads: cheaper than a CLI call
        resources = platform.admin("GET", "/_kaip/status").json()["resources"]
        return dict(next(r for r in resources if r["name"] == "echo").get("rollout") or {})

    def copies() -> int:
        return int((rollout().get("canary") or {}).get("requests", 0))

    answers = 0
    while copies() < 20:  # the canary's evidence: copies only, nothing else reaches it
        for _ in range(10):
            assert infer() == stables
        answers += 10
        assert answers < 2000, "the canary got no copies"
    for _ in range(20):
        assert infer() == stables
    now = rollout()
    assert now["step"] == 1 and now["paused"]
    canary = now["to"]
    pinned = f"{platform.url}/v2/models/echo/versions/{canary}/infer"
    own = httpx.post(pinned, json=INFER_BODY, timeout=30, trust_env=False).json()
    assert own["outputs"][0]["data"] == CANARY  # it answers otherwise: the equality is no accident

    metrics = httpx.get(f"{platform.url}/metrics", timeout=30, trust_env=False).text
    mirrored = [
        line
        for line in metrics.splitlines()
        if line.startswith("kaip_gateway_mirrored_requests_total{")
        and f'revision="{canary}"' in line
        and 'status_class="2xx"' in line
    ]
    assert mirrored and float(mirrored[0].rsplit(" ", 1)[1]) >= 20


def test_a_badly_retrained_shadow_is_rolled_back_on_mirrored_evidence_with_no_client_error(
    platform: LocalPlatform,
) -> None:
    steps = "[{weight: 0, pauseSeconds: 1}, {weight: 100, pauseSeconds: 1}]"
    stable, load, deployed = deploy_badly_retrained(platform, model_spec(steps=steps) + MIRROR)
    ok, failed = load.stop()
    assert deployed.returncode == 4, deployed.stdout + deployed.stderr
    assert "rolled back: " in deployed.stderr and "maxErrorRate" in deployed.stderr
    assert (failed, load.failures) == (0, []) and ok >= 30  # no client saw the broken canary
    assert platform.resource("echo")["stable"] == stable

"""Header and cookie routing to the canary through a real ``kaip up`` (issue 13 #5): at a
weight-0 preview step only requests carrying ``X-Canary: yes`` or the cookie ``canary=always``
reach the new revision; every other request, and one with another value, is answered by stable.
Timing is never asserted.
"""

from __future__ import annotations

import httpx
import pytest
from local_platform import INFER_BODY, LocalPlatform, model_spec, wait_for
from test_delivery import retrain

pytestmark = pytest.mark.slow

PREVIEW = "[{weight: 0, pause: {}}, {weight: 100, pauseSeconds: 1}]"
TRAFFIC = "    traffic: {canaryHeaders: {X-Canary: 'yes'}, canaryCookies: {canary: always}}\n"
STABLE, CANARY = [2.0, 4.0, 6.0, 8.0], [5.0, 10.0, 15.0, 20.0]


def test_only_requests_with_the_canary_header_or_cookie_reach_a_previewed_canary(
    platform: LocalPlatform,
) -> None:
    spec = platform.write_spec(model_spec(steps=PREVIEW) + TRAFFIC)
    platform.up(spec)
    url = f"{platform.url}/v2/models/echo/infer"

    def answers(headers: dict[str, str]) -> list[float]:
        response = httpx.post(url, json=INFER_BODY, headers=headers, timeout=30, trust_env=False)
        assert response.status_code == 200, response.text
        return list(response.json()["outputs"][0]["data"])

    retrain(platform, 5.0)
    deployed = platform.cli("deploy", str(spec))
    assert deployed.returncode == 0, deployed.stderr
    wait_for(lambda: answers({"x-canary": "yes"}) == CANARY, "the canary to answer marked requests")
    for _ in range(15):
        assert answers({}) == STABLE
        assert answers({"X-Canary": "no"}) == STABLE  # exact values only
        assert answers({"X-CANARY": "yes"}) == CANARY  # header names ignore case
        assert answers({"Cookie": "session=1; canary=always"}) == CANARY  # or the cookie
        assert answers({"Cookie": "canary=never; other=always"}) == STABLE
    rollout = platform.resource("echo")["rollout"]
    assert rollout["step"] == 1 and rollout["paused"]
    assert rollout["canary"]["requests"] >= 30  # the marked requests are the canary's evidence

    promoted = platform.cli("rollout", "promote", "echo", "--full")
    assert promoted.returncode == 0, promoted.stderr
    wait_for(lambda: answers({}) == CANARY, "every request to reach the promoted revision")

"""Header and cookie routing to the canary, and blue-green, through a real ``kaip up`` (issue 13
#5): with ``strategy: blueGreen`` the new revision runs at full size behind its preview route, and
only requests carrying ``X-Canary: yes`` or the cookie ``canary=always`` reach it; every other
request, and one with another value, is answered by stable; ``kaip rollout promote`` then sends
all traffic to it at once. Timing is never asserted.
"""

from __future__ import annotations

import httpx
import pytest
from local_platform import INFER_BODY, LocalPlatform, model_spec, wait_for
from test_delivery import retrain

pytestmark = pytest.mark.slow

PREVIEW = "[{weight: 0, pause: {}}]"
TRAFFIC = "    traffic: {canaryHeaders: {X-Canary: 'yes'}, canaryCookies: {canary: always}}\n"
STABLE, CANARY = [2.0, 4.0, 6.0, 8.0], [5.0, 10.0, 15.0, 20.0]


def test_only_requests_with_the_canary_header_or_cookie_reach_a_previewed_canary(
    platform: LocalPlatform,
) -> None:
    """Blue-green: the green revision at full size (2 of 2 replicas, where a canary at 0 % gets
    1), reached only through the preview route, then 100 % at once on one promote."""
    text = model_spec(steps=PREVIEW, strategy="blueGreen", min_replicas=2, max_replicas=2)
    spec = platform.write_spec(text + TRAFFIC)
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
    # The status folds the gateway's counts in on the controller's next tick: wait for it.
    wait_for(
        lambda: platform.resource("echo")["rollout"]["canary"]["requests"] >= 30,
        "the marked requests in the canary's evidence",
    )
    resource = platform.resource("echo")
    rollout = resource["rollout"]
    assert rollout["strategy"] == "blueGreen" and rollout["steps"] == [0]
    assert rollout["step"] == 1 and rollout["paused"]
    assert rollout["canary"]["requests"] >= 30  # the marked requests are the canary's evidence
    green = rollout["to"]
    wait_for(
        lambda: sum(
            r["revision"] == green and r["phase"] == "ready"
            for r in platform.resource("echo")["replicas"]
        ) == 2,
        "the green revision at full size (2 ready replicas) while it has 0 % of the traffic",
    )  # fmt: skip
    assert answers({}) == STABLE

    promoted = platform.cli("rollout", "promote", "echo")  # one promote: all at once
    assert promoted.returncode == 0, promoted.stderr
    assert f"promoted to revision {green}" in promoted.stdout or "promote: " in promoted.stdout
    (done,) = platform.rollouts("echo")
    assert done["status"] == "promoted" and [v["weight"] for v in done["verdicts"]] == [0]
    wait_for(lambda: answers({}) == CANARY, "the switch to the promoted revision")
    for _ in range(10):  # no step in between: every request is green's now
        assert answers({}) == CANARY

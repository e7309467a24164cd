"""``kaip up``'s cost gate judges both revisions over the same time: what their requests cost
since the canary's first step began, not stable's whole life against the canary's few seconds.

(The gate promoting a same-cost canary and rolling back a dearer one under steady load is in
test_observability.py.)"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from local_platform import INFER_BODY, Load, LocalPlatform, model_spec, wait_for

pytestmark = pytest.mark.slow


def test_a_canary_is_not_judged_against_the_cheaper_requests_of_stables_busier_past(
    platform: LocalPlatform,
) -> None:
    # Nap waits 50 ms per call, however many requests a batch holds. Stable first serves a busy
    # spell: 8 clients at once, batched about 8 to a call, so each request keeps it busy ~1/8 of
    # the wait. Then, while the canary (the same work) takes half the traffic, one client sends
    # one request at a time: each keeps its replica busy the whole 50 ms, stable's as much as
    # the canary's. Judged on stable's whole life the canary costs ~4x stable (rolled back);
    # judged over the rollout's time, as it should be, ~1x.
    steps = "[{weight: 50, pauseSeconds: 3}]"

    def spec_of(entrypoint: str) -> Path:
        text = model_spec(entrypoint=entrypoint, steps=steps, min_requests=20, max_cost_ratio=1.5)
        text = text.replace("maxBatchSize: 1, maxDelayMs: 0", "maxBatchSize: 8, maxDelayMs: 20")
        return platform.write_spec(text)

    spec = spec_of("model:Nap")
    platform.up(spec)
    url = f"{platform.url}/v2/models/echo/infer"

    def call(_: int) -> int:
        return httpx.post(url, json=INFER_BODY, timeout=60, trust_env=False).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(call, range(240))) == {200}

    spec_of("model:NapV2")
    assert platform.cli("deploy", str(spec)).returncode == 0
    wait_for(lambda: len(platform.resource("echo")["weights"]) == 2, "the canary's first step")
    load = Load(url, workers=1).start()
    try:

        def finished() -> bool:
            history = platform.rollouts("echo")
            return len(history) == 1 and history[0]["status"] != "running"

        wait_for(finished, "the rollout to end", limit=240)
    finally:
        _, failed = load.stop()
    [rollout] = platform.rollouts("echo")
    print(f"\n{rollout['status']}: {rollout['reason']}")
    assert failed == 0
    assert rollout["status"] == "promoted", rollout
    passed = rollout["verdicts"][-1]["reason"]
    assert "x stable's $" in passed and "(maxCostRatio 1.5)" in passed, passed

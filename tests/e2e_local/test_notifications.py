"""Rollout notifications through a real ``kaip up`` (issue 13 #7): a real HTTP receiver on
127.0.0.1 gets every move of two rollouts, in order, as Slack messages and as CloudEvents; one
receiver that refuses at first still gets them (retries), and one that is not there never holds
a rollout up.

Timing is never asserted; deadlines only bound how long a test waits.
"""

from __future__ import annotations

import socket

import pytest
from local_platform import Load, LocalPlatform, model_spec, wait_for
from test_analysis_gates import restore_weights
from test_delivery import retrain
from webhook_receiver import webhook_receiver

pytestmark = pytest.mark.slow

STEPS = "[{weight: 50, pauseSeconds: 1}, {weight: 100, pauseSeconds: 1}]"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when this returns: nothing listens


def test_rollout_moves_reach_slack_and_cloudevents_receivers_in_order_with_retries(
    platform: LocalPlatform,
) -> None:
    with webhook_receiver() as hook:
        hook.refuse_first = {"/flaky": 2}  # two 503s, then the third attempt is taken
        notifications = (
            "    notifications:\n"
            f"      - {{url: '{hook.url}/slack', format: slack}}\n"
            f"      - {{url: '{hook.url}/ce', format: cloudevents}}\n"
            f"      - {{url: '{hook.url}/flaky', format: cloudevents}}\n"
            f"      - {{url: 'http://127.0.0.1:{closed_port()}/gone'}}\n"
        )
        spec = platform.write_spec(model_spec(steps=STEPS) + notifications)
        platform.up(spec)
        stable = platform.resource("echo")["stable"]
        load = Load(f"{platform.url}/v2/models/echo/infer").start()
        wait_for(lambda: load.counts()[0] >= 30, "traffic on the stable revision")

        retrain(platform, 5.0)
        good = platform.cli("deploy", str(spec), "--wait", "--timeout", "5m")
        assert good.returncode == 0, good.stdout + good.stderr
        new = platform.rollouts("echo")[0]["to_revision"]
        restore_weights(platform)
        retrain(platform, None)
        bad = platform.cli("deploy", str(spec), "--wait", "--timeout", "5m")
        load.stop()
        assert bad.returncode == 4, bad.stdout + bad.stderr
        broken = platform.rollouts("echo")[0]["to_revision"]

        expected = [
            ("started", stable, new), ("step", stable, new), ("promoted", stable, new),
            ("started", new, broken), ("rolled_back", new, broken),
        ]  # fmt: skip
        wait_for(lambda: len(hook.bodies("/flaky")) >= len(expected), "the retried events")
        events = hook.received()
        cloud = [(h, b) for path, h, b in events if path == "/ce"]
        assert [
            (b["type"], b["data"]["fromRevision"], b["data"]["toRevision"]) for _, b in cloud
        ] == [(f"dev.kaip.rollout.{e}", f, t) for e, f, t in expected]
        headers, first = cloud[0]
        assert headers["content-type"] == "application/cloudevents+json"
        assert first["specversion"] == "1.0" and first["source"] == "kaip://local/models/echo"
        assert first["subject"] == new and first["id"]
        assert (first["data"]["step"], first["data"]["weight"], first["data"]["steps"]) == (
            1,
            50,
            2,
        )
        assert cloud[1][1]["data"]["weight"] == 100  # the step event names the step it moved to
        assert "maxErrorRate" in cloud[-1][1]["data"]["reason"]  # the rollback's evidence
        assert len({b["id"] for _, b in cloud}) == len(expected)

        slack = hook.bodies("/slack")
        assert len(slack) == len(expected) and all(set(b) == {"text"} for b in slack)
        assert slack[0]["text"].startswith(f"Model *echo*: rollout {stable} -> {new} started")
        assert f"rollout {new} -> {broken} rolled back: " in slack[-1]["text"]

        flaky = [b["type"].rsplit(".", 1)[1] for b in hook.bodies("/flaky")]
        assert flaky == [e for e, _, _ in expected] and hook.refused["/flaky"] == 2
    log = platform.log.read_text()
    assert "not delivered to http://127.0.0.1:" in log and "/gone after 3 attempts" in log

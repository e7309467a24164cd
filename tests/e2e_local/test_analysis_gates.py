"""Analysis gates through a real ``kaip up`` (issue 13 #4): a PromQL query against a real
Prometheus scraping the gateway's ``/metrics``, and a webhook on a real HTTP receiver, each
failing one canary (rolled back, with the check's evidence) and passing another (promoted).

The built-in gates are switched off here (``maxErrorRate: 1``), so only the analysis can roll a
canary back. Timing is never asserted; deadlines only bound how long a test waits.
"""

from __future__ import annotations

import shutil
import socket

import pytest
from local_platform import FIXTURES, Load, LocalPlatform, model_spec, wait_for
from prometheus_process import prometheus
from test_delivery import retrain
from webhook_receiver import webhook_receiver

pytestmark = pytest.mark.slow

STEPS = "[{weight: 50, pauseSeconds: 1}, {weight: 100, pauseSeconds: 1}]"
ERROR_RATIO = (
    '(sum(increase(kaip_gateway_requests_total{resource="{{name}}",revision="{{revision}}",'
    'status_class="5xx"}[20s])) or vector(0)) / sum(increase(kaip_gateway_requests_total{'
    'resource="{{name}}",revision="{{revision}}"}[20s]))'
)


def spec_with(analysis: str) -> str:
    text = model_spec(steps=STEPS).replace("maxErrorRate: 0.05", "maxErrorRate: 1")
    assert "maxErrorRate: 1," in text
    return text + "    analysis:\n      intervalSeconds: 1\n" + analysis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def restore_weights(platform: LocalPlatform) -> None:
    shutil.copy(FIXTURES / "models" / "model.py", platform.spec_dir / "model.py")


def test_a_promql_gate_rolls_back_a_failing_canary_and_passes_a_healthy_one(
    platform: LocalPlatform,
) -> None:
    port = free_port()
    with prometheus(platform.workdir, f"127.0.0.1:{port}") as url:
        query = f"      prometheus: {url}\n      queries:\n"
        query += f"        - {{name: error-ratio, max: 0.05, query: '{ERROR_RATIO}'}}\n"
        spec = platform.write_spec(spec_with(query))
        platform.up(spec, args=("--port", str(port)))
        stable = platform.resource("echo")["stable"]
        load = Load(f"{platform.url}/v2/models/echo/infer").start()
        wait_for(lambda: load.counts()[0] >= 30, "traffic on the stable revision")

        retrain(platform, None)  # every prediction fails; only the query can see it
        failed = platform.cli("deploy", str(spec), "--wait", "--timeout", "5m")
        assert failed.returncode == 4, failed.stdout + failed.stderr
        assert "rolled back: query error-ratio: 1 > max 0.05" in failed.stderr
        (rolled,) = platform.rollouts("echo")
        assert rolled["status"] == "rolled_back"
        assert rolled["verdicts"][-1]["reason"] == "query error-ratio: 1 > max 0.05"
        assert platform.resource("echo")["stable"] == stable

        restore_weights(platform)
        retrain(platform, 5.0)
        passed = platform.cli("deploy", str(spec), "--wait", "--timeout", "5m")
        load.stop()
        assert passed.returncode == 0, passed.stdout + passed.stderr
        promoted = platform.rollouts("echo")[0]
        assert promoted["status"] == "promoted", promoted
        reasons = [v["reason"] for v in promoted["verdicts"]]
        assert len(reasons) == 2
        assert all("query error-ratio: 0 within max 0.05" in r for r in reasons), reasons


def test_a_webhook_gate_votes_a_canary_back_and_another_through_with_each_step_posted(
    platform: LocalPlatform,
) -> None:
    """Also the pre-rollout hook (asked once before any step; its refusal rolls back) and the
    post-rollout hook (told every outcome), on the same platform."""
    with webhook_receiver() as hook:
        check = f"      webhooks:\n        - {{name: load-test, url: '{hook.url}/vote', "
        check += "timeoutSeconds: 5, metadata: {suite: smoke}}\n"
        check += f"        - {{name: smoke, type: pre-rollout, url: '{hook.url}/pre'}}\n"
        check += f"        - {{name: report, type: post-rollout, url: '{hook.url}/post'}}\n"
        hook.statuses = {"/pre": 200, "/post": 200}
        spec = platform.write_spec(spec_with(check))
        platform.up(spec)
        stable = platform.resource("echo")["stable"]
        load = Load(f"{platform.url}/v2/models/echo/infer").start()
        wait_for(lambda: load.counts()[0] >= 30, "traffic on the stable revision")

        hook.status, hook.answer = 503, "p99 too high on the canary"
        retrain(platform, 5.0)  # a healthy model: only the webhook says no
        refused = platform.cli("deploy", str(spec), "--wait", "--timeout", "5m")
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert "rolled back: webhook load-test: HTTP 503: p99 too high on the canary" in (
            refused.stderr
        )
        assert platform.resource("echo")["stable"] == stable
        voted_no = hook.bodies("/vote")
        assert voted_no and {b["step"] for b in voted_no} == {1}
        body = voted_no[0]
        assert (body["kind"], body["name"], body["stableRevision"]) == ("Model", "echo", stable)
        assert (body["phase"], body["weight"], body["steps"]) == ("rollout", 50, 2)
        assert body["metadata"] == {"suite": "smoke"} and body["check"] == "load-test"

        hook.status, hook.answer = 200, "fine"
        restore_weights(platform)
        retrain(platform, 3.0)
        asked_before = len(voted_no)
        accepted = platform.cli("deploy", str(spec), "--wait", "--timeout", "5m")
        _, errors = load.stop()
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
        assert errors == 0, load.failures[:5]
        promoted = platform.rollouts("echo")[0]
        assert promoted["status"] == "promoted"
        new = promoted["to_revision"]
        voted_yes = hook.bodies("/vote")[asked_before:]
        assert {b["revision"] for b in voted_yes} == {new}
        steps = [b["step"] for b in voted_yes]
        assert steps == sorted(steps) and set(steps) == {1, 2}, steps  # each step, in order
        assert all("webhook load-test: HTTP 200: fine" in v["reason"] for v in promoted["verdicts"])

        # pre-rollout: asked once per new revision, before any step's vote
        arrived = [(path, body["revision"]) for path, _, body in hook.received()]
        for revision in (voted_no[0]["revision"], new):
            assert arrived.count(("/pre", revision)) == 1, arrived
            assert arrived.index(("/pre", revision)) < arrived.index(("/vote", revision))
        pre = hook.bodies("/pre")[0]
        assert (pre["phase"], pre["check"], pre["step"], pre["weight"]) == (
            "pre-rollout", "smoke", 0, 0,
        )  # fmt: skip
        # post-rollout: told each outcome, with the verdict's reason
        wait_for(lambda: len(hook.bodies("/post")) >= 2, "both outcomes told")
        told = [(b["revision"], b["outcome"], b["phase"]) for b in hook.bodies("/post")]
        assert told == [
            (voted_no[0]["revision"], "rolled_back", "post-rollout"),
            (new, "promoted", "post-rollout"),
        ], told
        assert "HTTP 503: p99 too high" in hook.bodies("/post")[0]["reason"]

        # a pre-rollout refusal rolls the new revision back before any step is voted on
        hook.statuses["/pre"] = 409
        restore_weights(platform)
        retrain(platform, 7.0)
        refused_early = platform.cli("deploy", str(spec), "--wait", "--timeout", "5m")
        assert refused_early.returncode == 4, refused_early.stdout + refused_early.stderr
        assert "rolled back: pre-rollout webhook smoke: HTTP 409: fine" in refused_early.stderr
        latest = platform.rollouts("echo")[0]
        assert latest["status"] == "rolled_back"
        assert [v["reason"] for v in latest["verdicts"]] == [
            "pre-rollout webhook smoke: HTTP 409: fine"
        ]
        assert all(b["revision"] != latest["to_revision"] for b in hook.bodies("/vote"))
        assert platform.resource("echo")["stable"] == new
        wait_for(lambda: len(hook.bodies("/post")) >= 3, "the early rollback told")
        assert hook.bodies("/post")[2]["outcome"] == "rolled_back"

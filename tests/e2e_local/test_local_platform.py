"""``kaip up`` as a real process tree: gateway, replicas, faults, rollouts, scale from zero.

Every test starts ``python -m kaip.cli up`` in its own working directory, sends real requests
through the gateway and drives it with the real CLI. Timing is never asserted; deadlines only
bound how long a test waits before it fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import httpx
import pytest
from local_platform import INFER_BODY, Load, LocalPlatform, model_spec, wait_for

pytestmark = pytest.mark.slow


def commit_spec(platform: LocalPlatform) -> str:
    """Make the spec directory a git repository with one commit; return its sha."""
    git = ["git", "-C", str(platform.spec_dir), "-c", "user.name=e2e", "-c", "user.email=e@x"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "spec"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    out = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def infer_url(platform: LocalPlatform, name: str = "echo") -> str:
    return f"{platform.url}/v2/models/{name}/infer"


def test_sigkill_of_one_of_two_replicas_under_load_fails_no_request(
    platform: LocalPlatform,
) -> None:
    platform.up(platform.write_spec(model_spec(min_replicas=2, max_replicas=2)))
    wait_for(lambda: len(platform.resource("echo")["replicas"]) == 2, "two replicas")
    wait_for(
        lambda: all(r["phase"] == "ready" for r in platform.resource("echo")["replicas"]),
        "both replicas ready",
    )
    load = Load(infer_url(platform)).start()
    wait_for(lambda: load.counts()[0] >= 50, "50 requests before the fault")
    victim = platform.resource("echo")["replicas"][0]
    os.kill(victim["pid"], signal.SIGKILL)

    def came_back() -> bool:
        replicas = {r["id"]: r for r in platform.resource("echo")["replicas"]}
        again = replicas.get(victim["id"])
        return (
            again is not None
            and again["restarts"] >= 1
            and again["pid"] != victim["pid"]
            and all(r["phase"] == "ready" for r in replicas.values())
        )

    wait_for(came_back, "the killed replica to come back")
    before = load.counts()[0]
    wait_for(lambda: load.counts()[0] >= before + 50, "50 requests after the restart")
    ok, failed = load.stop()
    print(f"\nSIGKILL drill: {ok} requests ok, {failed} failed")
    assert failed == 0, load.failures[:5]


def test_a_frozen_replica_under_load_is_timed_out_and_skipped_and_fails_no_request(
    platform: LocalPlatform,
) -> None:
    """SIGSTOP: the kernel still accepts connections for the replica, but nothing ever answers.

    The model's ``timeoutSeconds: 1`` gives its route a 6 s gateway timeout (plus the 5 s grace);
    the load's clients wait 30 s, and the supervisor restarts an unhealthy replica only after
    30 s, so only the gateway's timeout and retry can keep every request from failing.
    """
    platform.up(platform.write_spec(model_spec(min_replicas=2, max_replicas=2, timeout_seconds=1)))
    wait_for(
        lambda: [r["phase"] for r in platform.resource("echo")["replicas"]] == ["ready"] * 2,
        "two ready replicas",
    )
    load = Load(infer_url(platform)).start()
    wait_for(lambda: load.counts()[0] >= 50, "50 requests before the fault")
    victim = platform.resource("echo")["replicas"][0]
    os.kill(victim["pid"], signal.SIGSTOP)
    try:
        wait_for(
            lambda: "sent no response within 6 s" in platform.log.read_text(errors="replace"),
            "the gateway to give up on the frozen replica",
        )
        before = load.counts()[0]
        wait_for(lambda: load.counts()[0] >= before + 50, "50 requests after the timeout")
        ok, failed = load.stop()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim["pid"], signal.SIGCONT)
    print(f"\nSIGSTOP drill: {ok} requests ok, {failed} failed")
    assert failed == 0, load.failures[:5]
    assert victim["id"] in platform.log.read_text(errors="replace")


def test_a_revision_that_fails_every_request_is_rolled_back(platform: LocalPlatform) -> None:
    spec = platform.write_spec(model_spec())
    platform.up(spec)
    stable = platform.resource("echo")["stable"]
    load = Load(infer_url(platform)).start()
    wait_for(lambda: load.counts()[0] >= 30, "traffic on the stable revision")
    ok_before, failed_before = load.counts()
    platform.write_spec(model_spec(entrypoint="model:Broken"))
    deployed = platform.cli("deploy", str(spec))
    assert deployed.returncode == 0, deployed.stderr

    def rolled_back() -> bool:
        history = platform.rollouts("echo")
        return bool(history) and history[0]["status"] == "rolled_back"

    wait_for(rolled_back, "the broken revision to be rolled back")
    # A request routed to the canary just before the rollback may still end in a failure after
    # it is recorded: the rollout is judged once every worker has had time for new requests.
    settled = load.counts()[0] + 3 * load.workers
    wait_for(lambda: load.counts()[0] >= settled, "the requests in flight at the rollback to end")
    ok_after, failed_after = load.counts()
    rollout = platform.rollouts("echo")[0]
    during = (ok_after - ok_before) + (failed_after - failed_before)
    failed_during = failed_after - failed_before
    wait_for(lambda: load.counts()[0] >= ok_after + 30, "traffic after the rollback")
    _, failed = load.stop()
    share = failed_during / during
    print(
        f"\nbroken rollout: {failed_during} of {during} requests failed during the rollout "
        f"({share:.1%}; first step weight 10%); reason: {rollout['reason']}"
    )
    assert failed_during > 0, "the canary never got traffic"
    assert share <= 0.10
    assert failed == failed_after, f"requests failed after the rollback: {load.failures[-3:]}"
    resource = platform.resource("echo")
    assert resource["stable"] == stable
    assert resource["canary"] is None
    assert resource["weights"] == {stable: 100}
    wait_for(
        lambda: {r["revision"] for r in platform.resource("echo")["replicas"]} == {stable},
        "the broken replicas to be drained",
    )
    verdicts = [v["action"] for v in rollout["verdicts"]]
    assert verdicts[-1] == "rollback"


def test_a_healthy_revision_walks_every_step_and_is_promoted(platform: LocalPlatform) -> None:
    spec = platform.write_spec(model_spec())
    platform.up(spec)
    old = platform.resource("echo")["stable"]
    load = Load(infer_url(platform)).start()
    wait_for(lambda: load.counts()[0] >= 30, "traffic on the stable revision")
    platform.write_spec(model_spec(entrypoint="model:HealthyV2"))
    sha = commit_spec(platform)
    assert platform.cli("deploy", str(spec)).returncode == 0
    watched = platform.cli("rollout", "status", "echo", "--watch")  # returns when it ends
    assert watched.returncode == 0, watched.stderr
    assert "no rollout in progress" in watched.stdout and ": promoted (" in watched.stdout
    rollout = platform.rollouts("echo")[0]
    new = rollout["to_revision"]
    wait_for(
        lambda: {r["revision"] for r in platform.resource("echo")["replicas"]} == {new},
        "the old replicas to be drained",
    )
    before = load.counts()[0]
    wait_for(lambda: load.counts()[0] >= before + 20, "traffic after the promotion")
    ok, failed = load.stop()
    print(f"\nhealthy rollout: {ok} requests ok, {failed} failed")
    assert failed == 0, load.failures[:5]
    assert new != old
    assert [(v["weight"], v["action"]) for v in rollout["verdicts"]] == [
        (10, "advance"),
        (50, "advance"),
        (100, "promote"),
    ]
    assert platform.resource("echo")["weights"] == {new: 100}
    events = platform.admin("GET", "/_kaip/events").json()
    deploys = [e for e in events["events"] if e["action"] in ("deploy", "rollout")]
    assert [(e["action"], e["outcome"], e["commit_sha"]) for e in deploys] == [
        ("deploy", "started", sha),
        ("rollout", "promoted", sha),
    ]
    assert deploys[1]["duration_s"] > 0 and deploys[0]["who"]


def test_the_first_request_after_idle_scales_from_zero_and_succeeds(
    platform: LocalPlatform,
) -> None:
    spec = model_spec(min_replicas=0, max_replicas=1, scale_to_zero_after=1)
    platform.up(platform.write_spec(spec))
    wait_for(lambda: platform.resource("echo")["replicas"] == [], "scale to zero")
    started = time.monotonic()
    response = httpx.post(infer_url(platform), json=INFER_BODY, timeout=60, trust_env=False)
    elapsed = time.monotonic() - started
    print(f"\nscale from zero: first request answered {response.status_code} in {elapsed:.2f}s")
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]
    logs = sorted(p.name for p in (platform.workdir / ".kaip" / "logs").glob("echo-*.log"))
    assert len(logs) == 2, logs  # the warm replica that went away, and the one started on demand


def test_a_bad_spec_changes_nothing_and_prints_every_problem(platform: LocalPlatform) -> None:
    bad = model_spec().replace("maxReplicas: 1", "maxReplica: 1")
    bad_path = platform.write_spec(bad, "bad.yaml")
    refused = platform.cli("up", str(bad_path), "--port", "0")
    assert refused.returncode == 2
    assert f"{bad_path}:" in refused.stderr and "maxReplica" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (platform.workdir / ".kaip" / "run.json").exists()

    good = platform.write_spec(model_spec())
    bad_path.unlink()
    platform.up(good)
    before = platform.resource("echo")
    bad_path = platform.write_spec(bad, "bad.yaml")
    for command in (("deploy", str(bad_path)), ("up", str(bad_path), "--port", "0")):
        result = platform.cli(*command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "maxReplica" in result.stderr and "did you mean 'maxReplicas'" in result.stderr
        assert "Traceback" not in result.stderr
    after = platform.resource("echo")
    assert after["stable"] == before["stable"]
    assert after["canary"] is None
    assert [r["pid"] for r in after["replicas"]] == [r["pid"] for r in before["replicas"]]
    assert platform.rollouts("echo") == []


def test_restarting_kaip_up_resumes_a_rollout_from_the_state_database(
    platform: LocalPlatform,
) -> None:
    slow = "[{weight: 10, pauseSeconds: 600}, {weight: 100}]"
    spec = platform.write_spec(model_spec(steps=slow))
    platform.up(spec)
    stable = platform.resource("echo")["stable"]
    platform.write_spec(model_spec(entrypoint="model:HealthyV2", steps=slow))
    assert platform.cli("deploy", str(spec)).returncode == 0
    wait_for(lambda: platform.resource("echo")["weights"].get(stable) == 90, "the first step")
    canary = platform.resource("echo")["canary"]
    platform.down()

    platform.up(spec)
    resumed = platform.resource("echo")
    assert (resumed["stable"], resumed["canary"]) == (stable, canary)
    history = platform.rollouts("echo")
    assert [(r["status"], r["to_revision"]) for r in history] == [("running", canary)]
    wait_for(lambda: platform.resource("echo")["weights"] == {stable: 90, canary: 10}, "10%")
    promoted = platform.cli("rollout", "promote", "echo")
    assert promoted.returncode == 0, promoted.stderr
    assert platform.resource("echo")["stable"] == canary
    assert platform.rollouts("echo")[0]["status"] == "promoted"


def test_replace_strategy_swaps_revisions_with_no_failed_request(platform: LocalPlatform) -> None:
    spec = platform.write_spec(model_spec(strategy="replace", min_replicas=2, max_replicas=2))
    platform.up(spec)
    old = platform.resource("echo")["stable"]
    load = Load(infer_url(platform)).start()
    wait_for(lambda: load.counts()[0] >= 30, "traffic on the old revision")
    new_spec = model_spec(
        entrypoint="model:HealthyV2", strategy="replace", min_replicas=2, max_replicas=2
    )
    platform.write_spec(new_spec)
    assert platform.cli("deploy", str(spec)).returncode == 0
    wait_for(
        lambda: (
            {r["revision"] for r in platform.resource("echo")["replicas"]} - {old} != set()
            and old not in {r["revision"] for r in platform.resource("echo")["replicas"]}
        ),
        "the old replicas to be replaced and drained",
    )
    before = load.counts()[0]
    wait_for(lambda: load.counts()[0] >= before + 30, "traffic on the new revision")
    ok, failed = load.stop()
    print(f"\nreplace: {ok} requests ok, {failed} failed")
    assert failed == 0, load.failures[:5]
    rollout = platform.rollouts("echo")[0]
    assert (rollout["strategy"], rollout["status"]) == ("replace", "promoted")
    assert platform.resource("echo")["weights"] == {rollout["to_revision"]: 100}

"""Daily deploys through a real ``kaip up``: retrained weights are a new revision and a rollout.

Timing is never asserted; deadlines only bound how long a test waits before it fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from local_platform import (
    FIXTURES,
    INFER_BODY,
    Load,
    LocalPlatform,
    https_server,
    model_spec,
    wait_for,
)

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


def deploy_badly_retrained(
    platform: LocalPlatform, text: str
) -> tuple[str, Load, subprocess.CompletedProcess[str]]:
    """Run ``text``'s Model under load, retrain it badly and ``kaip deploy --wait`` it: the
    stable revision, the load (still running) and the deploy's outcome."""
    spec = platform.write_spec(text)
    platform.up(spec)
    stable = str(platform.resource("echo")["stable"])
    load = Load(f"{platform.url}/v2/models/echo/infer").start()
    wait_for(lambda: load.counts()[0] >= 30, "traffic on the stable revision")
    retrain(platform, None)
    return stable, load, platform.cli("deploy", str(spec), "--wait", "--timeout", "5m")


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
    stable, load, deployed = deploy_badly_retrained(platform, model_spec())
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


def test_dry_run_shows_the_diff_a_manual_pause_waits_for_promote_and_undo_goes_back(
    platform: LocalPlatform,
) -> None:
    paused = (
        "[{weight: 10, pauseSeconds: 1}, {weight: 50, pause: {}}, {weight: 100, pauseSeconds: 1}]"
    )
    spec = platform.write_spec(model_spec(steps=paused))
    platform.up(spec)
    old = platform.resource("echo")["stable"]
    retrain(platform, 5.0)

    # --dry-run: the revision the new weights would make and the diff, and nothing changes
    dry = platform.cli("deploy", str(spec), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Model echo: would roll out revision " in dry.stdout and f"over {old}" in dry.stdout
    assert f"--- Model/echo@{old}" in dry.stdout
    assert "-  sha256: " in dry.stdout and "+  sha256: " in dry.stdout
    planned = json.loads(platform.cli("deploy", str(spec), "--dry-run", "-o", "json").stdout)
    (entry,) = planned["plan"]
    assert (entry["action"], entry["current"]) == ("rollout", old)
    assert platform.rollouts("echo") == [] and platform.resource("echo")["canary"] is None

    load = Load(f"{platform.url}/v2/models/echo/infer").start()
    deployed = platform.cli("deploy", str(spec))
    assert deployed.returncode == 0, deployed.stderr
    new = entry["revision"]
    assert f"rolling out revision {new}" in deployed.stdout

    def held_at_the_pause_with_plenty_of_evidence() -> bool:
        rollout = platform.resource("echo")["rollout"]
        return bool(
            rollout and rollout["step"] == 2 and rollout["paused"]
            and rollout["canary"]["requests"] >= 50  # 5 x minRequests: a timed step would pass
        )  # fmt: skip

    wait_for(held_at_the_pause_with_plenty_of_evidence, "the rollout to hold at the pause")
    waiting = platform.cli("rollout", "status", "echo")
    assert "hold: paused at 50%: waiting for `kaip rollout promote`" in waiting.stdout
    promoted = platform.cli("rollout", "promote", "echo")
    assert promoted.returncode == 0, promoted.stderr
    # The CLI acts through the portal's /api/v1 with the run's token, naming the person (who
    # it takes that to be where it runs), not the token.
    person = subprocess.run(
        [sys.executable, "-c", "from kaip.cli.local import who; print(who())"],
        cwd=platform.workdir, env=platform.env(), capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    assert person and person != "local-admin"
    assert f"pause at 50% released by {person}" in promoted.stdout, promoted.stdout
    assert "advance: " in promoted.stdout
    watched = platform.cli("rollout", "status", "echo", "--watch", "--timeout", "5m")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    (done,) = platform.rollouts("echo")
    assert done["status"] == "promoted" and done["to_revision"] == new
    assert [v["weight"] for v in done["verdicts"]] == [10, 50, 100]
    assert "released by " in done["verdicts"][1]["reason"]

    # undo, the retrained weights still in place: the old revision's own bytes (the copy the
    # deploy kept under their sha256) roll out again
    assert "factor = 5.0" in (platform.spec_dir / "model.py").read_text(encoding="utf-8")
    unknown = platform.cli("rollout", "undo", "echo", "--to-revision", "ffffffffff")
    assert unknown.returncode == 1 and "matches none of its revisions" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    undone = platform.cli("rollout", "undo", "echo")
    assert undone.returncode == 0, undone.stderr
    assert f"undo: Model echo: rolling out revision {old}" in undone.stdout
    wait_for(held_at_the_pause_with_plenty_of_evidence, "the undo to hold at the pause")
    promoted = platform.cli("rollout", "promote", "echo", "--full")  # the rest at once
    assert promoted.returncode == 0, promoted.stderr
    assert f"promoted to revision {old}" in promoted.stdout
    assert platform.resource("echo")["stable"] == old
    _, failed = load.stop()
    assert failed == 0, load.failures[:5]
    assert predict(platform) == [2.0, 4.0, 6.0, 8.0]


@pytest.fixture
def https_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, bytes]]:
    """The fixture's model.py served over HTTPS on loopback (a throwaway CA that kaip up and its
    replicas trust through SSL_CERT_FILE) at /model.py: change ``["model.py"]`` to change it."""
    files = {"model.py": (FIXTURES / "models" / "model.py").read_bytes()}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with https_server(Handler, tmp_path, monkeypatch) as base:
        files["url"] = f"{base}/model.py".encode()
        yield files


def test_an_unpinned_remote_artifact_is_pinned_at_deploy_and_new_bytes_are_a_new_revision(
    platform: LocalPlatform, https_model: dict[str, bytes]
) -> None:
    url = https_model["url"].decode()
    text = model_spec(strategy="replace").replace("uri: model.py", f"uri: '{url}'")
    spec = platform.write_spec(text)
    platform.up(spec)
    old = platform.resource("echo")["stable"]
    assert predict(platform) == [2.0, 4.0, 6.0, 8.0]
    again = platform.cli("deploy", str(spec))
    assert again.returncode == 0, again.stderr
    assert f"unchanged at revision {old}" in again.stdout, "same bytes, same revision"

    v1 = https_model["model.py"]
    https_model["model.py"] = v1.replace(b"factor = 2.0", b"factor = 5.0", 1)
    dry = platform.cli("deploy", str(spec), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would roll out revision " in dry.stdout and f"over {old}" in dry.stdout
    assert "-  sha256: " in dry.stdout and "+  sha256: " in dry.stdout, dry.stdout
    deployed = platform.cli("deploy", str(spec), "--wait", "--timeout", "5m")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "rolling out revision" in deployed.stdout and f"over {old}" in deployed.stdout
    new = platform.resource("echo")["stable"]
    assert new != old
    assert predict(platform) == [5.0, 10.0, 15.0, 20.0]
    # the old revision still names the old bytes: undo serves them again, from the cache
    https_model["model.py"] = b"raise SystemExit('not the pinned bytes')\n"
    undone = platform.cli("rollout", "undo", "echo")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    wait_for(lambda: platform.resource("echo")["stable"] == old, "the undo to take over")
    assert predict(platform) == [2.0, 4.0, 6.0, 8.0]

"""Delivery (DORA) numbers from a history made through the real CLI, against hand-computed values.

A real ``kaip up`` serves two Models from a real git repository; every change is a real commit
(its committer date scripted) deployed with ``kaip deploy`` and ended with ``kaip rollout
promote --full``, ``abort`` or ``undo``. The only fake is the wall clock at the state boundary:
``KAIP_LOCAL__WALL_CLOCK_FILE`` names a file the test writes the simulated time to before each
step, so what the state records is stamped with the script's hours instead of today's. Then
``kaip delivery`` (which asks ``/api/v1/dora``) must answer the numbers worked out by hand below.

Times are hours after :data:`T0`; the window is the 6 days ending at hour 143. Before e5's
``kaip rollout undo`` a commit at hour 77 puts e2's weights back: a local artifact is a file the
revision pins by digest, and undo's replica refuses one that has changed since.

==========  ======  ==========  =================================  =========================
deployment  commit  start       ends                               counts as
==========  ======  ==========  =================================  =========================
echo e1     -2      0 (up)      created, full at 0                 lead 2
other o1    -2      0 (up)      created, full at 0                 lead 2
echo e2     20      24          promoted 25                        lead 5
other o2    25      26          promoted 28                        lead 3
echo e3     47      48          aborted 48.5                       caught by the canary
other o3    48      50          aborted 51                         caught by the canary
echo e4     60      72          promoted 74                        lead 14; reached users
echo e5     (undo)  78          e2's revision, promoted 78.5       rework; recovery 0.5
echo e6     94      96          promoted 97                        lead 3
other o4    100     101         promoted 102                       lead 2
other o5    120     122         promoted 123                       lead 3
echo e7     130     131         still a canary at the window's end not decided
==========  ======  ==========  =================================  =========================

All: 12 deployments in 6 days (2 a day); 11 decided, 3 failed (e3, o3 caught by the canary; e4
reached full traffic and was undone by e5): 3/11; rework 1/12 (e5); commit lead times, sorted,
2 2 2 3 3 3 5 14: median (3 + 3) / 2 = 3 h, p90 the ceil(0.9 * 8) = 8th, 14 h; recovery 0.5 h;
no registered artifacts, so no artifact lead time.
Owner team-b (other): 5 deployments, 1/5 failed, leads 2 2 3 3: median 2.5 h, p90 the 4th, 3 h.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from local_platform import LocalPlatform, model_spec, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # 27 CLI calls, 11 replica starts

T0 = 1_800_000_000.0
H = 3600.0
UNTIL_HOUR = 143
OWNERS = {"echo": "team-a", "other": "team-b"}
MANUAL = "[{weight: 50, pause: {}}]"


class History:
    """The script's hands: commits with dates, the clock file, and the CLI."""

    def __init__(self, platform: LocalPlatform, clock_file: Path) -> None:
        self.platform = platform
        self.clock_file = clock_file
        self.repo = platform.spec_dir

    def at(self, hour: float) -> None:
        self.clock_file.write_text(f"{T0 + hour * H}\n", encoding="ascii")

    def git(self, *args: str, hour: float = 0.0) -> None:
        date = f"@{int(T0 + hour * H)} +0000"
        env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        subprocess.run(
            ["git", "-c", "user.name=script", "-c", "user.email=script@example.com", *args],
            cwd=self.repo, env={**self.platform.env(), **env}, check=True, capture_output=True,
        )  # fmt: skip

    def commit(self, hour: float, name: str, factor: float) -> None:
        """Retrain ``name`` (its model's factor) and commit the change at ``hour``."""
        model = self.repo / name / "model.py"
        text = model.read_text(encoding="utf-8")
        start = text.index("    factor = ")
        end = text.index("\n", start)
        model.write_text(f"{text[:start]}    factor = {factor}{text[end:]}", encoding="utf-8")
        self.git("commit", "-qam", f"{name}: factor {factor}", hour=hour)

    def cli(self, *args: str) -> str:
        result = self.platform.cli(*args)
        assert result.returncode == 0, f"kaip {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout

    def resource(self, name: str) -> dict[str, Any]:
        """``name`` as ``kaip status`` shows it, read over HTTP (waits poll this, not the CLI)."""
        answer = self.platform.admin("GET", "/api/v1/status")
        assert answer.status_code == 200, answer.text
        (found,) = [r for r in answer.json()["resources"] if r["name"] == name]
        return dict(found)

    def rollout(self, name: str) -> dict[str, Any] | None:
        found = self.resource(name).get("rollout")
        return dict(found) if found else None

    def canary_serving(self, name: str) -> None:
        """Wait until the canary's replica takes its share of traffic (at the manual pause)."""

        def serving() -> bool:
            resource = self.resource(name)
            to = (resource.get("rollout") or {}).get("to")
            return any(r["revision"] == to and r["routed"] for r in resource["replicas"])

        wait_for(serving, f"{name}'s canary to serve")

    def deploy(self, hour: float, name: str) -> None:
        self.at(hour)
        self.cli("deploy", str(self.repo / name))
        self.canary_serving(name)

    def undo(self, hour: float, name: str) -> None:
        self.at(hour)
        self.cli("rollout", "undo", name)
        self.canary_serving(name)

    def end(self, hour: float, name: str, how: str) -> None:
        self.at(hour)
        self.cli("rollout", *(("promote", name, "--full") if how == "promote" else (how, name)))
        wait_for(lambda: self.rollout(name) is None, f"{name}'s rollout to end")


def write_models(platform: LocalPlatform) -> None:
    for name, owner in OWNERS.items():
        text = model_spec(name, steps=MANUAL).replace("owner: e2e", f"owner: {owner}")
        (platform.spec_dir / name).mkdir(parents=True, exist_ok=True)
        platform.write_spec(text, f"{name}/kaip.yaml")
        (platform.spec_dir / "model.py").replace(platform.spec_dir / name / "model.py")


def delivery(history: History, *args: str) -> dict[str, Any]:
    until = str(T0 + UNTIL_HOUR * H)
    answer = json.loads(
        history.cli("delivery", "--days", "6", "--until", until, "-o", "json", *args)
    )
    assert isinstance(answer, dict)
    return answer


def test_a_scripted_history_through_the_cli_gives_the_hand_computed_numbers(
    platform: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock_file = tmp_path / "wall-clock"
    monkeypatch.setenv("KAIP_LOCAL__WALL_CLOCK_FILE", str(clock_file))
    write_models(platform)
    history = History(platform, clock_file)
    history.git("init", "-q")
    history.git("add", ".", hour=-2)
    history.git("commit", "-qm", "two models", hour=-2)
    history.at(0)
    platform.up(platform.spec_dir / "echo", platform.spec_dir / "other")

    history.commit(20, "echo", 3.0)
    history.deploy(24, "echo")
    history.end(25, "echo", "promote")
    revision_e2 = platform.resource("echo")["stable"]
    history.commit(25, "other", 3.0)
    history.deploy(26, "other")
    history.end(28, "other", "promote")
    history.commit(47, "echo", 4.0)
    history.deploy(48, "echo")
    history.commit(48, "other", 4.0)
    history.end(48.5, "echo", "abort")
    history.deploy(50, "other")
    history.end(51, "other", "abort")
    history.commit(60, "echo", 5.0)
    history.deploy(72, "echo")
    history.end(74, "echo", "promote")
    revision_e4 = platform.resource("echo")["stable"]
    history.commit(77, "echo", 3.0)  # e2's weights back in place: undo's replica checks them
    history.undo(78, "echo")
    history.end(78.5, "echo", "promote")
    assert platform.resource("echo")["stable"] == revision_e2
    history.commit(94, "echo", 6.0)
    history.deploy(96, "echo")
    history.end(97, "echo", "promote")
    history.commit(100, "other", 5.0)
    history.deploy(101, "other")
    history.end(102, "other", "promote")
    history.commit(120, "other", 6.0)
    history.deploy(122, "other")
    history.end(123, "other", "promote")
    history.commit(130, "echo", 7.0)
    history.deploy(131, "echo")

    every = delivery(history)
    assert every["window"] == {"since": T0 - H, "until": T0 + UNTIL_HOUR * H, "days": 6.0}
    freq = every["deployment_frequency"]
    assert (freq["deployments"], freq["per_day"]) == (12, 2.0)
    lead = every["lead_time"]
    assert lead["commit"]["count"] == 8
    assert lead["commit"]["median_s"] == pytest.approx(3 * H)
    assert lead["commit"]["p90_s"] == pytest.approx(14 * H)
    assert lead["artifact"]["count"] == 0
    cfr = every["change_fail_rate"]
    assert cfr["decided"] == 11 and cfr["rate"] == pytest.approx(3 / 11)
    assert (len(cfr["caught_by_canary"]), len(cfr["user_impacting"])) == (2, 1)
    listed = {d["id"]: d for d in every["deployments"]}
    (reached_users,) = cfr["user_impacting"]
    assert (listed[reached_users]["name"], listed[reached_users]["revision"]) == (
        "echo",
        revision_e4,
    )
    assert {listed[i]["name"] for i in cfr["caught_by_canary"]} == {"echo", "other"}
    assert every["recovery_time"]["median_s"] == pytest.approx(0.5 * H)
    assert every["rework_rate"]["rate"] == pytest.approx(1 / 12)
    (rework,) = every["rework_rate"]["deployments"]
    assert (listed[rework]["revision"], listed[rework]["started_at"]) == (revision_e2, T0 + 78 * H)

    team_b = delivery(history, "--owner", "team-b")
    assert team_b["deployment_frequency"]["deployments"] == 5
    assert team_b["change_fail_rate"]["rate"] == pytest.approx(1 / 5)
    assert team_b["lead_time"]["commit"]["median_s"] == pytest.approx(2.5 * H)
    assert team_b["lead_time"]["commit"]["p90_s"] == pytest.approx(3 * H)

    text = history.cli("delivery", "--days", "6", "--until", str(T0 + UNTIL_HOUR * H))
    assert "12 deployments, 2.00 a day" in text
    assert "27.3% of 11 decided: 2 caught by the canary, 1 reached full traffic" in text
    assert "median 3.00 h, p90 14.00 h over 8" in text

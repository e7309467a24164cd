"""Delivery (DORA) metrics on the control port: ``GET /api/v1/dora`` and the ``/delivery`` page.

A real control port (real controller, real SQLite) over a state database holding the scripted
history of ``tests/unit/dora_history.py`` (20 deployments over 10 simulated days, 3 rolled
back), asked over real sockets with httpx. The API answers the hand-computed numbers; the page
shows the same numbers, each linking to the rows of its deployments; bad queries get 400 with a
message naming the parameter, and nobody without a token or session gets anything.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from control_harness import TOKEN, RunningControl, running_control

sys.path.insert(0, str(Path(__file__).parents[2] / "unit"))
from dora_history import EXPECTED, T0, UNTIL, H, record_history

WINDOW = {"days": "10", "until": str(UNTIL)}


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControl]:
    state_dir = tmp_path_factory.mktemp("dora") / ".kaip"
    record_history(state_dir)
    with running_control(state_dir) as running:
        yield running


def get(control: RunningControl, path: str, **params: str) -> httpx.Response:
    return httpx.get(
        control.url + path, params=params, headers=control.headers, trust_env=False, timeout=60
    )


def test_the_api_answers_the_hand_computed_numbers(control: RunningControl) -> None:
    answer = get(control, "/api/v1/dora", **WINDOW)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    expected = EXPECTED["all"]
    assert data["api_version"] == "v1"
    assert data["window"] == {"since": T0, "until": UNTIL, "days": 10.0}
    freq = data["deployment_frequency"]
    assert (freq["deployments"], freq["per_day"]) == (expected["deployments"], 2.0)
    assert freq["weekends_excluded"] is False and "elite" in freq["bands_2024"]
    lead = data["lead_time"]
    assert lead["commit"]["median_s"] == pytest.approx(expected["lead_commit_median_h"] * H)
    assert lead["commit"]["p90_s"] == pytest.approx(expected["lead_commit_p90_h"] * H)
    assert lead["artifact"]["median_s"] == pytest.approx(expected["lead_artifact_median_h"] * H)
    cfr = data["change_fail_rate"]
    assert cfr["rate"] == pytest.approx(expected["change_fail_rate"])
    assert (len(cfr["caught_by_canary"]), len(cfr["user_impacting"])) == (2, 1)
    assert data["recovery_time"]["median_s"] == pytest.approx(expected["recovery_median_h"] * H)
    assert data["rework_rate"]["rate"] == pytest.approx(expected["rework_rate"])
    assert data["refused_by_quality_gate"] == expected["refused"]
    listed = {d["id"]: d for d in data["deployments"]}
    assert len(listed) == 20
    (undone,) = cfr["user_impacting"]
    assert (listed[undone]["name"], listed[undone]["revision"]) == ("digits", "a4")
    assert listed[undone]["owner"] == "team-a"


def test_the_api_filters_by_owner_and_resource(control: RunningControl) -> None:
    team_b = get(control, "/api/v1/dora", owner="team-b", **WINDOW).json()
    assert team_b["filter"] == {"owner": "team-b", "resource": None}
    assert team_b["deployment_frequency"]["deployments"] == EXPECTED["team-b"]["deployments"]
    assert team_b["lead_time"]["commit"]["median_s"] == pytest.approx(2.25 * H)
    assert {d["name"] for d in team_b["deployments"]} == {"sentiment"}
    web = get(control, "/api/v1/dora", resource="web", **WINDOW).json()
    assert web["deployment_frequency"]["deployments"] == 4
    assert web["change_fail_rate"]["rate"] == 0


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"days": "0"}, "days="),
        ({"days": "ten"}, "days="),
        ({"days": "367"}, "days="),
        ({"until": "yesterday"}, "until="),
        ({"until": "-5"}, "until="),
        ({"owner": "x" * 300}, "owner"),
    ],
)
def test_bad_queries_get_400_naming_the_parameter(
    control: RunningControl, params: dict[str, str], names: str
) -> None:
    answer = get(control, "/api/v1/dora", **params)
    assert answer.status_code == 400, answer.text
    assert names in answer.json()["error"]


def test_nobody_without_a_credential_reads_the_metrics(control: RunningControl) -> None:
    api = httpx.get(control.url + "/api/v1/dora", trust_env=False)
    assert api.status_code == 401
    assert "Bearer" in api.json()["error"] and "deploy" not in api.text
    wrong = httpx.get(
        control.url + "/api/v1/dora", headers={"Authorization": "Bearer nope"}, trust_env=False
    )
    assert wrong.status_code == 401
    page = httpx.get(control.url + "/delivery", trust_env=False)
    assert (page.status_code, page.headers["location"]) == (303, "/login")


def test_the_page_shows_the_api_numbers_linked_to_their_deployments(
    control: RunningControl,
) -> None:
    data = get(control, "/api/v1/dora", **WINDOW).json()
    with httpx.Client(base_url=control.url, trust_env=False, timeout=60) as browser:
        login = browser.post("/login", data={"token": TOKEN}, headers={"Origin": control.url})
        assert login.status_code == 303
        page = browser.get("/delivery", params=WINDOW)
    assert page.status_code == 200, page.text
    html = page.text
    assert "2.00 per day" in html and "15.8 %" in html and "5.0 %" in html
    assert "median 2 h, p90 25 h" in html  # lead time, commit clock
    assert "median 30 min" in html  # recovery
    rows = set(re.findall(r'<tr id="d-(\d+)">', html))
    assert rows == {str(d["id"]) for d in data["deployments"]}
    for failed in data["change_fail_rate"]["failed"]:
        assert f'href="#d-{failed}"' in html
    assert "not a ranking" in html
    assert '<option value="team-a">' in html and '<option value="team-b">' in html
    assert "<script" not in html


def test_the_page_explains_a_bad_window(control: RunningControl) -> None:
    answer = get(control, "/delivery", days="0")
    assert answer.status_code == 400
    assert "whole number of days" in answer.text

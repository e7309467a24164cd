"""schemathesis against the portal's API, from the API's own OpenAPI document.

A real control port over a state database with the scripted delivery history. Every operation
of ``/api/v1/openapi.json`` is fuzzed with valid and invalid inputs, with a bearer token and
without: nothing answers 5xx, and nothing but 401 answers without it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from control_harness import RunningControl, running_control
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

sys.path.insert(0, str(Path(__file__).parents[2] / "unit"))
from dora_history import record_history

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


PORTAL_PATHS = {
    "/api/v1/resources",
    "/api/v1/dora",
    "/api/v1/resources/{name}",
    "/api/v1/resources/{name}/{action}",
}
CONTROL_PATHS = {
    "/api/v1/status",
    "/api/v1/deployments",
    "/api/v1/rollouts/{name}",
    "/api/v1/events",
    "/api/v1/cost",
    "/api/v1/profile/{name}",
}


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControl]:
    root = tmp_path_factory.mktemp("fuzz")
    record_history(root / ".kaip")
    with running_control(root / ".kaip") as running:
        yield running


def test_the_document_needs_a_credential_and_names_every_operation(
    control: RunningControl,
) -> None:
    assert httpx.get(control.url + "/api/v1/openapi.json", trust_env=False).status_code == 401
    document = httpx.get(
        control.url + "/api/v1/openapi.json", headers=control.headers, trust_env=False
    ).json()
    assert set(document["paths"]) == PORTAL_PATHS | CONTROL_PATHS


def test_kaip_ups_control_calls_in_v1_take_the_bearer_token_only(control: RunningControl) -> None:
    """The CLI's calls (status, deployments, rollouts, events, cost, profile) are served under
    /api/v1 on the control port by the admin API: a token answers, nothing else does."""
    for path in ("/api/v1/status", "/api/v1/events", "/api/v1/cost?by=resource"):
        with_token = httpx.get(control.url + path, headers=control.headers, trust_env=False)
        assert with_token.status_code in (200, 503), (path, with_token.text)  # 503: no costs
        assert "error" not in with_token.json() or with_token.status_code == 503
        without = httpx.get(control.url + path, trust_env=False)
        assert without.status_code == 401, (path, without.text)
    status = httpx.get(control.url + "/api/v1/status", headers=control.headers, trust_env=False)
    assert {"ready", "resources"} <= set(status.json())
    events = httpx.get(control.url + "/api/v1/events", headers=control.headers, trust_env=False)
    assert len(events.json()["events"]) > 0  # the scripted history
    missing = httpx.get(
        control.url + "/api/v1/rollouts/nothing-here", headers=control.headers, trust_env=False
    )
    assert missing.status_code == 404 and "nothing-here" in missing.json()["error"]
    refused = httpx.post(
        control.url + "/api/v1/deployments", json={"paths": []}, headers=control.headers,
        trust_env=False,
    )  # fmt: skip
    assert 400 <= refused.status_code < 500, refused.text


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
def test_schemathesis_finds_no_5xx_and_no_answer_without_a_credential(
    control: RunningControl, mode: schemathesis.GenerationMode
) -> None:
    document = httpx.get(
        control.url + "/api/v1/openapi.json", headers=control.headers, trust_env=False
    ).json()
    document["paths"] = {p: v for p, v in document["paths"].items() if p in PORTAL_PATHS}
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 4  # the control calls are fuzzed under /_kaip (test_control_port)
    seen: dict[bool, set[int]] = {True: set(), False: set()}
    for operation in operations:

        @FUZZ
        @given(case=operation.as_strategy(mode))
        def check(case: schemathesis.Case) -> None:
            for authenticated in (True, False):
                headers = {**(case.headers or {})}
                headers.pop("Authorization", None)
                if authenticated:
                    headers.update(control.headers)
                response = case.call(base_url=control.url, headers=headers, timeout=30)
                what = (authenticated, case.method, case.formatted_path, case.query)
                assert response.status_code < 500, (what, response.text)
                if not authenticated:
                    assert response.status_code == 401, (what, response.text)
                seen[authenticated].add(response.status_code)

        try:
            check()
        except Unsatisfiable:
            assert mode is schemathesis.GenerationMode.NEGATIVE
    print(f"\n{mode}: statuses with the token {sorted(seen[True])}, without {sorted(seen[False])}")
    assert seen[False] == {401}
    if mode is schemathesis.GenerationMode.POSITIVE:
        assert 200 in seen[True]
    else:
        assert 400 in seen[True]

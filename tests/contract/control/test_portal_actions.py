"""Promote and abort from the portal: a session's form, its CSRF token, a role, an owner.

A real control port with the App ``web`` (owner team-a) rolling out to a canary that waits at a
manual pause. Sessions are opened with role tokens made by :func:`create_token` (as ``kaip token
create`` does): a viewer's promote is refused with a message naming the role it needs, a
deployer of another team's is refused naming the owner, a form without the session's CSRF token
or from another origin is refused, and a deployer of team-a promotes (the pause is released) and
aborts (the rollout ends and the event log says who did it). Role tokens work as bearer tokens
on the admin API under the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from control_harness import CANARY_APP, RunningControl, deploy_spec, running_control

from kaip.local.controller.tokens import create_token


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControl]:
    root = tmp_path_factory.mktemp("actions")
    with running_control(root / ".kaip") as running:
        running.spec = root / "spec"  # type: ignore[attr-defined]
        running.state_dir = root / ".kaip"  # type: ignore[attr-defined]
        deploy(running, 300)
        yield running


def deploy(control: RunningControl, seconds: int) -> None:
    spec: Path = control.spec  # type: ignore[attr-defined]
    deploy_spec(control, spec, CANARY_APP.format(owner="team-a", seconds=seconds))


def token(control: RunningControl, role: str, *owners: str, name: str = "") -> str:
    made, _ = create_token(control.state_dir, role, owners, name)  # type: ignore[attr-defined]
    return made


def session(control: RunningControl, secret: str) -> tuple[httpx.Client, str]:
    """A logged-in client and the CSRF token of its resource page's forms."""
    client = httpx.Client(base_url=control.url, trust_env=False, timeout=60)
    login = client.post("/login", data={"token": secret}, headers={"Origin": control.url})
    assert login.status_code == 303, login.text
    page = client.get("/resources/web")
    assert page.status_code == 200
    found = re.search(r'action="/resources/web/promote".*?name="csrf" value="([^"]+)"', page.text)
    assert found, "no promote form on the page while a rollout runs"
    return client, found.group(1)


def post(client: httpx.Client, control: RunningControl, verb: str, csrf: str) -> httpx.Response:
    return client.post(
        f"/resources/web/{verb}", data={"csrf": csrf}, headers={"Origin": control.url}
    )


@pytest.fixture
def rolling(control: RunningControl) -> Iterator[None]:
    deploy(control, 301)  # a canary rollout starts, waiting at the pause
    yield
    deploy(control, 300)  # back to the stable spec: a running rollout is aborted


def test_a_viewer_may_not_promote_and_is_told_why(control: RunningControl, rolling: None) -> None:
    client, csrf = session(control, token(control, "viewer", name="vic"))
    answer = post(client, control, "promote", csrf)
    assert answer.status_code == 403
    assert "vic (portal session) (viewer) may not promote the rollout of App web" in answer.text
    assert "needs the deployer role" in answer.text
    assert control.controller.resources["web"].rollout is not None  # nothing changed


def test_a_deployer_of_another_owner_may_not_promote(
    control: RunningControl, rolling: None
) -> None:
    client, csrf = session(control, token(control, "deployer", "team-b", name="bob"))
    answer = post(client, control, "abort", csrf)
    assert answer.status_code == 403
    assert "deployer for team-b" in answer.text and "belongs to team-a" in answer.text


def test_forms_need_the_session_csrf_token_and_our_origin(
    control: RunningControl, rolling: None
) -> None:
    client, csrf = session(control, token(control, "deployer", "team-a"))
    assert post(client, control, "abort", "not-the-token").status_code == 403
    assert post(client, control, "abort", "").status_code == 403
    foreign = client.post(
        "/resources/web/abort", data={"csrf": csrf}, headers={"Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403
    anonymous = httpx.post(
        control.url + "/resources/web/abort", data={"csrf": csrf}, trust_env=False
    )
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    assert control.controller.resources["web"].rollout is not None  # still rolling out


def test_a_deployer_of_the_owner_promotes_and_aborts(
    control: RunningControl, rolling: None
) -> None:
    client, csrf = session(control, token(control, "deployer", "team-a", name="dee"))
    promoted = post(client, control, "promote", csrf)
    assert promoted.status_code == 200, promoted.text
    assert "the pause at 10% is released" in promoted.text
    rollout = control.controller.resources["web"].rollout
    assert rollout is not None and rollout.released_by == "dee (portal session)"
    aborted = post(client, control, "abort", csrf)
    assert aborted.status_code == 200, aborted.text
    assert "aborted" in aborted.text
    assert control.controller.resources["web"].rollout is None
    events = httpx.get(
        control.url + "/_kaip/events", headers=control.headers, trust_env=False
    ).json()["events"]
    last = events[-1]
    assert (last["action"], last["outcome"], last["who"]) == (
        "rollout",
        "aborted",
        "dee (portal session)",
    )


def test_role_tokens_follow_the_same_rules_on_the_admin_api(
    control: RunningControl, rolling: None
) -> None:
    def abort(secret: str) -> httpx.Response:
        return httpx.post(
            control.url + "/_kaip/rollouts/web/abort",
            json={},
            headers={"Authorization": f"Bearer {secret}"},
            trust_env=False,
        )

    assert abort("kaip_0123456789ab_" + "A" * 43).status_code == 401
    assert abort(token(control, "viewer")).status_code == 403
    other = abort(token(control, "deployer", "team-b"))
    assert other.status_code == 403 and "belongs to team-a" in other.json()["error"]
    assert abort(token(control, "deployer", "team-a")).status_code == 200


def test_the_portals_api_acts_for_a_bearer_token_only(
    control: RunningControl, rolling: None
) -> None:
    """``POST /api/v1/resources/web/promote|abort``: the same rules as the forms, for scripts; a
    session cookie alone never acts, and the body is checked."""

    def act(verb: str, secret: str | None, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.post(
            f"{control.url}/api/v1/resources/web/{verb}", headers=headers, trust_env=False,
            timeout=60, **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip

    client, _ = session(control, token(control, "deployer", "team-a"))
    cookie_only = client.post("/api/v1/resources/web/abort")
    assert cookie_only.status_code == 401 and "never acts" in cookie_only.json()["error"]
    assert act("abort", None).status_code == 401
    viewer = act("abort", token(control, "viewer"))
    assert viewer.status_code == 403 and "needs the deployer role" in viewer.json()["error"]
    other = act("promote", token(control, "deployer", "team-b"))
    assert other.status_code == 403 and "belongs to team-a" in other.json()["error"]
    deployer = token(control, "deployer", "team-a", name="api-dee")
    assert act("undo", deployer, content="{oops").status_code == 400
    assert act("nap", deployer).status_code == 404
    # A role token acts as itself: naming someone else is refused, as are fields out of place.
    spoof = act("promote", deployer, json={"who": "somebody-else"})
    assert spoof.status_code == 403 and "acts as itself" in spoof.json()["error"]
    assert act("abort", deployer, json={"full": True}).status_code == 400
    assert act("promote", deployer, json={"to_revision": "abc"}).status_code == 400
    assert act("promote", deployer, json={"full": "yes"}).status_code == 400
    assert control.controller.resources["web"].rollout is not None  # none of those acted
    assert act("promote", deployer).status_code == 200
    rollout = control.controller.resources["web"].rollout
    assert rollout is not None and rollout.released_by == "api-dee"
    aborted = act("abort", deployer, json={})
    assert aborted.status_code == 200 and "aborted" in aborted.json()["message"]
    assert control.controller.resources["web"].rollout is None
    again = act("abort", deployer)
    assert again.status_code == 409 and "no rollout in progress" in again.json()["error"]


def test_the_playground_form_needs_the_session_and_a_model(
    control: RunningControl, rolling: None
) -> None:
    client, csrf = session(control, token(control, "viewer"))
    bad = client.post(
        "/resources/web/playground", data={"csrf": "wrong", "body": "{}"},
        headers={"Origin": control.url},
    )  # fmt: skip
    assert bad.status_code == 403
    app = client.post(
        "/resources/web/playground", data={"csrf": csrf, "body": "{}"},
        headers={"Origin": control.url},
    )  # fmt: skip
    assert app.status_code == 404 and "No Model served over OIP v2" in app.text


def test_a_deployer_rolls_back_to_the_revision_before(control: RunningControl) -> None:
    deploy(control, 302)  # a new revision, rolled out and promoted below
    client, csrf = session(control, token(control, "deployer", "team-a", name="rob"))
    before = control.controller.resources["web"].stable.revision
    promoted = client.post(
        "/resources/web/promote", data={"csrf": csrf}, headers={"Origin": control.url}
    )
    assert promoted.status_code == 200, promoted.text
    # full promotion needs the canary ready; force it through the admin API (full=true)
    full = httpx.post(
        control.url + "/_kaip/rollouts/web/promote", json={"full": True},
        headers=control.headers, trust_env=False, timeout=60,
    )  # fmt: skip
    assert full.status_code == 200, full.text
    newer = control.controller.resources["web"].stable.revision
    assert newer != before
    page = client.get("/resources/web").text
    assert 'action="/resources/web/undo"' in page
    viewer, viewer_csrf = session_any(control, token(control, "viewer", name="val"))
    refused = viewer.post(
        "/resources/web/undo", data={"csrf": viewer_csrf}, headers={"Origin": control.url}
    )
    assert refused.status_code == 403 and "may not roll back App web" in refused.text
    undone = client.post(
        "/resources/web/undo", data={"csrf": csrf, "to_revision": ""},
        headers={"Origin": control.url},
    )  # fmt: skip
    assert undone.status_code == 200, undone.text
    assert f"over {newer}" in undone.text and before in undone.text
    assert control.controller.resources["web"].canary.revision == before  # type: ignore[union-attr]


def session_any(control: RunningControl, secret: str) -> tuple[httpx.Client, str]:
    """A logged-in client and its CSRF token (from the log-out form, on any page)."""
    client = httpx.Client(base_url=control.url, trust_env=False, timeout=60)
    login = client.post("/login", data={"token": secret}, headers={"Origin": control.url})
    assert login.status_code == 303, login.text
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
    assert found
    return client, found.group(1)

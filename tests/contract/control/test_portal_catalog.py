"""The catalog pages through many resources on the server: search by name, filter by owner.

A real control port with 120 Apps deployed (each a ``sleep`` process, scaled to zero when idle),
read over real sockets as JSON (``GET /api/v1/resources``) and as the HTML catalog. A page holds
``per_page`` rows sorted by name and says how many match in all; the search matches part of a
name ignoring case, the owner filter matches exactly; bad parameters get 400 naming them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from control_harness import RunningControl, running_control

COUNT = 120
APP = """\
apiVersion: kaip.dev/v1alpha1
kind: App
metadata: {{name: {name}}}
spec:
  owner: {owner}
  command: [sleep, "300"]
  scaling: {{minReplicas: 0, maxReplicas: 1, scaleToZeroAfterSeconds: 1}}
"""


def owner_of(i: int) -> str:
    return "team-a" if i % 2 == 0 else "team-b"


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControl]:
    root = tmp_path_factory.mktemp("catalog")
    spec = root / "spec"
    spec.mkdir()
    docs = [APP.format(name=f"app-{i:03d}", owner=owner_of(i)) for i in range(COUNT)]
    (spec / "kaip.yaml").write_text("---\n".join(docs))
    with running_control(root / ".kaip") as running:
        answer = httpx.post(
            running.url + "/_kaip/deploy",
            json={"paths": [str(spec)]},
            headers=running.headers,
            timeout=120,
            trust_env=False,
        )
        assert answer.status_code == 200, answer.text
        yield running


def api(control: RunningControl, **params: str) -> httpx.Response:
    return httpx.get(
        control.url + "/api/v1/resources",
        params=params,
        headers=control.headers,
        trust_env=False,
        timeout=60,
    )


def test_the_first_page_holds_fifty_rows_by_name_and_counts_all(control: RunningControl) -> None:
    data = api(control).json()
    assert (data["total"], data["page"], data["pages"], data["per_page"]) == (COUNT, 1, 3, 50)
    assert [r["name"] for r in data["items"]] == [f"app-{i:03d}" for i in range(50)]
    assert data["owners"] == ["team-a", "team-b"]
    first = data["items"][0]
    assert (first["kind"], first["owner"]) == ("App", "team-a")
    assert first["url"].endswith("/apps/app-000/")


def test_pages_cover_every_resource_once(control: RunningControl) -> None:
    seen = []
    for number in (1, 2, 3, 4):
        data = api(control, page=str(number), per_page="40").json()
        seen += [r["name"] for r in data["items"]]
    assert seen == [f"app-{i:03d}" for i in range(COUNT)]  # page 4 is past the end: empty


def test_search_and_owner_filter(control: RunningControl) -> None:
    found = api(control, q="APP-01").json()
    assert [r["name"] for r in found["items"]] == [f"app-{i:03d}" for i in range(10, 20)]
    assert found["total"] == 10
    team_b = api(control, owner="team-b", per_page="200").json()
    assert team_b["total"] == COUNT // 2
    assert {r["owner"] for r in team_b["items"]} == {"team-b"}
    both = api(control, q="app-11", owner="team-a").json()
    assert [r["name"] for r in both["items"]] == [f"app-11{d}" for d in (0, 2, 4, 6, 8)]
    assert api(control, owner="team-").json()["total"] == 0  # exact, not a prefix


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"page": "0"}, "page="),
        ({"page": "x"}, "page="),
        ({"per_page": "201"}, "per_page="),
        ({"q": "a" * 254}, "q:"),
    ],
)
def test_bad_parameters_get_400_naming_them(
    control: RunningControl, params: dict[str, str], names: str
) -> None:
    answer = api(control, **params)
    assert answer.status_code == 400
    assert names in answer.json()["error"]


def test_the_html_catalog_pages_with_links_that_keep_the_search(control: RunningControl) -> None:
    answer = httpx.get(
        control.url + "/",
        params={"owner": "team-b", "per_page": "25", "page": "2"},
        headers=control.headers,
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text
    html = answer.text
    names = re.findall(r'<a href="/resources/(app-\d+)">', html)
    assert names == [f"app-{i:03d}" for i in range(51, 100, 2)]
    assert "26 to 50 of 60 · page 2 of 3" in html
    assert 'href="/?q=&amp;owner=team-b&amp;page=3&amp;per_page=25" rel="next"' in html
    assert 'href="/?q=&amp;owner=team-b&amp;page=1&amp;per_page=25" rel="previous"' in html
    assert '<option value="team-b" selected>' in html
    assert "Traffic is counted by the gateway since <code>kaip up</code> started" in html
    empty = httpx.get(
        control.url + "/", params={"q": "nothing-like-it"}, headers=control.headers,
        trust_env=False,
    )  # fmt: skip
    assert "No Model or App matches" in empty.text


def test_nobody_without_a_credential_lists_anything(control: RunningControl) -> None:
    answer = httpx.get(control.url + "/api/v1/resources", trust_env=False)
    assert answer.status_code == 401
    assert "app-" not in answer.text

"""The portal's playground and overview: a prediction equal to ``model.predict``, snippets that run.

The quickstart's digits model is trained here (``examples/quickstart/train.py``) and served by
a real ``kaip up``, beside ``examples/tiny-lm`` (OpenAI and OIP v2). The logged-in browser opens
the Model's page: the playground's request is already shaped from the model's own metadata (one
row of 64 numbers, its datatype); the test types three digits rows into it and presses Send, and
the answer the page shows (through the real gateway) is what the trained pipeline's ``predict``
says for those rows, with its latency. The page's overview shows the running spec as YAML and
snippets (curl, Python, the OpenAI SDK) that the test runs exactly as a user would paste them.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import joblib
import openai
import pytest
import yaml
from local_platform import LocalPlatform, wait_for
from playwright import sync_api as playwright
from sklearn.datasets import load_digits
from test_control_browser import BROWSER_MS, CHROMIUM, browser_args

from kaip.spec.loader import dump_resource, load_paths

pytestmark = pytest.mark.slow
QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart"
SPEC = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: digits}
spec:
  owner: ml-platform
  artifact: {uri: model.joblib, format: sklearn, trust: true}
  serve: {protocols: [oip-v2]}
---
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: tiny-lm}
spec:
  owner: ml-platform
  artifact: {uri: tiny_lm.py, format: python, entrypoint: "tiny_lm:TinyLM", trust: true}
  serve: {protocols: [openai, oip-v2]}
---
apiVersion: kaip.dev/v1alpha1
kind: App
metadata: {name: echo}
spec:
  owner: ml-platform
  command: [python, log_app.py]
"""
LOG_APP = """\
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/healthz":  # kaip up's health checks would push the rest out
            print("served", self.path, flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format, *args):
        pass


print("echo listening", flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""
TINY_LM = Path(__file__).parents[2] / "examples" / "tiny-lm" / "model.py"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium")
    local = LocalPlatform(tmp_path_factory.mktemp("playground"))
    spec = local.write_spec(SPEC)
    trained = subprocess.run(
        [sys.executable, str(QUICKSTART / "train.py"), str(spec.parent / "model.joblib")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    shutil.copy(TINY_LM, spec.parent / "tiny_lm.py")
    (spec.parent / "log_app.py").write_text(LOG_APP)
    local.up(spec)
    try:
        wait_for(lambda: local.resource("digits")["ready"], "digits to be ready")
        wait_for(lambda: local.resource("tiny-lm")["ready"], "tiny-lm to be ready")
        wait_for(lambda: local.resource("echo")["ready"], "echo to be ready")
        yield local
    finally:
        local.down()


@contextmanager
def logged_in(platform: LocalPlatform) -> Iterator[playwright.Page]:
    """A headless Chromium page logged in to the portal with the run's token."""
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=browser_args(), timeout=BROWSER_MS
        )
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(BROWSER_MS)
            page.goto(f"{platform.admin_url}/login")
            page.fill("#token", platform.token)
            page.click("button[type=submit]")
            page.wait_for_url(f"{platform.admin_url}/")
            yield page
        finally:
            browser.close()


def test_the_playground_prediction_equals_model_predict(platform: LocalPlatform) -> None:
    rows = load_digits().data[[0, 7, 42]]
    expected = joblib.load(platform.spec_dir / "model.joblib").predict(rows).tolist()
    body: dict[str, list[dict[str, object]]] = {
        "inputs": [{"name": "input-0", "shape": [3, 64], "data": rows.ravel().tolist()}]
    }
    with logged_in(platform) as page:
        page.goto(f"{platform.admin_url}/resources/digits")
        shaped = json.loads(page.input_value("#playground-body"))
        (first,) = shaped["inputs"]
        assert (first["shape"], len(first["data"])) == ([1, 64], 64)
        assert first["datatype"] in ("FP32", "FP64")  # as the model's metadata says
        body["inputs"][0]["datatype"] = first["datatype"]

        page.fill("#playground-body", json.dumps(body))
        page.click("#playground button[type=submit]")
        page.wait_for_selector("#playground-output")
        assert page.inner_text("#playground-status") == "200"
        answer = json.loads(page.inner_text("#playground-output"))
        (output,) = answer["outputs"]
        assert [int(v) for v in output["data"]] == expected
        assert re.fullmatch(r"\d+\.\d ms", page.inner_text("#playground-ms"))


def test_the_chat_box_of_an_openai_model_answers_as_the_model_does(
    platform: LocalPlatform,
) -> None:
    with logged_in(platform) as page:
        page.goto(f"{platform.admin_url}/resources/digits")
        assert page.locator("#chat").count() == 0  # digits speaks OIP v2 only
        page.goto(f"{platform.admin_url}/resources/tiny-lm")
        assert page.locator("#playground").count() == 1  # it speaks both
        page.fill("#chat-message", "where the models are\nthe quick brown fox")
        page.click("#chat button[type=submit]")
        page.wait_for_selector("#chat-output")
        assert page.inner_text("#chat-status") == "200"
        # tiny-lm answers the prompt's last line reversed word by word, through the gateway.
        assert page.inner_text("#chat-output") == "fox brown quick the"
        assert re.fullmatch(r"\d+\.\d ms", page.inner_text("#chat-ms"))
        assert page.input_value("#chat-message").endswith("the quick brown fox")


def test_a_replicas_log_lines_appear_on_its_page_as_they_are_written(
    platform: LocalPlatform,
) -> None:
    marker = f"/marker-{uuid.uuid4().hex[:8]}"
    with logged_in(platform) as page:
        page.goto(f"{platform.admin_url}/resources/echo")
        assert re.search(r"echo-[0-9a-f]{6}-\d+ \| echo listening", page.inner_text("#logs"))
        assert marker not in page.inner_text("#logs")
        answer = httpx.get(f"{platform.url}/apps/echo{marker}", trust_env=False, timeout=60)
        assert answer.status_code == 200, answer.text
        # The line the App prints arrives over the page's log stream, without a reload.
        page.wait_for_function(
            "m => document.querySelector('#logs').innerText.includes(m)", arg=marker
        )
        assert page.inner_text("#logs").count(marker) == 1


def test_the_profile_button_shows_where_a_busy_replica_spends_its_time(
    platform: LocalPlatform,
) -> None:
    rows = {"inputs": [{"name": "input-0", "shape": [64, 64], "datatype": "FP64",
                        "data": load_digits().data[:64].ravel().tolist()}]}  # fmt: skip
    meta = httpx.get(f"{platform.url}/v2/models/digits", trust_env=False).json()
    rows["inputs"][0]["datatype"] = meta["inputs"][0]["datatype"]
    stop = threading.Event()

    def load() -> None:  # traffic while the profile runs, so the replica has work to show
        with httpx.Client(trust_env=False, timeout=60) as client:
            while not stop.is_set():
                client.post(f"{platform.url}/v2/models/digits/infer", json=rows)

    worker = threading.Thread(target=load, daemon=True)
    try:
        with logged_in(platform) as page:
            page.goto(f"{platform.admin_url}/resources/echo")
            assert page.locator("#profile").count() == 0  # an App: nothing to profile
            page.goto(f"{platform.admin_url}/resources/digits")
            page.fill("#profile input[name=seconds]", "2")
            worker.start()
            page.click("#profile button[type=submit]")
            page.wait_for_selector("#profile-samples")
            assert int(page.inner_text("#profile-samples")) > 0
            frames = page.locator("#hot-frames tbody tr").all_inner_texts()
            assert frames and all(re.search(r"\S+:\d+", f) for f in frames), frames
            stacks = page.locator("#profile-stacks").text_content() or ""
            assert re.search(r"^\S.* \d+$", stacks, re.MULTILINE), stacks[:500]
    finally:
        stop.set()
    worker.join(timeout=60)


def test_the_traffic_charts_show_the_requests_of_the_last_intervals(
    platform: LocalPlatform,
) -> None:
    bearer = {"Authorization": f"Bearer {platform.token}"}
    meta = httpx.get(f"{platform.url}/v2/models/tiny-lm", trust_env=False).json()
    (first,) = meta["inputs"]
    rows = {"inputs": [{"name": first["name"], "shape": [1, 2], "datatype": first["datatype"],
                        "data": [1.0, 2.0]}]}  # fmt: skip
    for _ in range(30):
        answer = httpx.post(f"{platform.url}/v2/models/tiny-lm/infer", json=rows, trust_env=False)
        assert answer.status_code == 200, answer.text
    highest = re.compile(r'data-chart="rate"><figcaption>[^<]*<strong[^>]*>[^<]*</strong>, '
                         r"highest ([0-9.]+)")  # fmt: skip

    def drawn() -> bool:  # a point is taken every 10 s: the next one counts these requests
        page = httpx.get(f"{platform.admin_url}/resources/tiny-lm", headers=bearer,
                         trust_env=False, timeout=60).text  # fmt: skip
        found = highest.search(page)
        return found is not None and float(found.group(1)) > 0 and "<polyline" in page

    wait_for(drawn, "a chart point with tiny-lm's requests", 60)


class _Overview(HTMLParser):
    """The ``<pre data-snippet>`` blocks (label -> code) and ``<pre id="spec-yaml">`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.snippets: dict[str, str] = {}
        self.spec = ""
        self._into: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "pre" and found.get("data-snippet"):
            self._into = str(found["data-snippet"])
            self.snippets[self._into] = ""
        elif tag == "pre" and found.get("id") == "spec-yaml":
            self._into = "spec"

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._into = None

    def handle_data(self, data: str) -> None:
        if self._into == "spec":
            self.spec += data
        elif self._into is not None:
            self.snippets[self._into] += data


def overview_of(platform: LocalPlatform, name: str) -> _Overview:
    answer = httpx.get(
        f"{platform.admin_url}/resources/{name}",
        headers={"Authorization": f"Bearer {platform.token}"},
        timeout=60,
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text
    parsed = _Overview()
    parsed.feed(answer.text)
    return parsed


def pasted(language: str, code: str) -> str:
    """Run a snippet as a user would paste it; what it printed."""
    command = ["bash", "-c", code] if language == "shell" else [sys.executable, "-c", code]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, (code, ran.stdout, ran.stderr)
    return ran.stdout


def test_the_overview_shows_the_running_spec_and_snippets_that_run_as_pasted(
    platform: LocalPlatform,
) -> None:
    declared = {r.metadata.name: dump_resource(r) for r in (d.resource for d in load_paths(
        [platform.spec_dir]).documents)}  # fmt: skip
    for name, file in (("digits", "model.joblib"), ("tiny-lm", "tiny_lm.py")):  # pinned on deploy
        digest = hashlib.sha256((platform.spec_dir / file).read_bytes()).hexdigest()
        declared[name]["spec"]["artifact"]["sha256"] = digest
    digits = overview_of(platform, "digits")
    assert yaml.safe_load(digits.spec) == declared["digits"]
    assert set(digits.snippets) == {"curl", "Python (httpx)"}  # no OpenAI: it does not speak it
    # The snippets' request is the playground's: zeros shaped as the model's metadata.
    zeros = [0.0] * 64
    expected = joblib.load(platform.spec_dir / "model.joblib").predict([zeros]).tolist()
    (output,) = json.loads(pasted("shell", digits.snippets["curl"]))["outputs"]
    assert [int(v) for v in output["data"]] == expected
    printed = pasted("python", digits.snippets["Python (httpx)"])
    assert [int(v) for v in ast.literal_eval(printed)[0]["data"]] == expected

    tiny = overview_of(platform, "tiny-lm")
    assert yaml.safe_load(tiny.spec) == declared["tiny-lm"]
    assert set(tiny.snippets) == {"curl", "Python (httpx)", "curl (OpenAI)", "OpenAI SDK"}
    said = pasted("python", tiny.snippets["OpenAI SDK"]).strip()
    chat = json.loads(pasted("shell", tiny.snippets["curl (OpenAI)"]))
    assert said == chat["choices"][0]["message"]["content"] == "hello. Say"  # reversed by word

    api = httpx.get(
        f"{platform.admin_url}/api/v1/resources/tiny-lm",
        headers={"Authorization": f"Bearer {platform.token}"},
        timeout=60,
        trust_env=False,
    ).json()
    assert api["manifest"] == declared["tiny-lm"]
    assert {"what": "OpenAI chat", "request": f"POST {platform.url}/v1/chat/completions"} in (
        api["endpoints"]
    )


def test_the_catalog_shows_what_a_models_requests_cost(platform: LocalPlatform) -> None:
    bearer = {"Authorization": f"Bearer {platform.token}"}

    def row() -> dict[str, Any]:
        page = httpx.get(
            f"{platform.admin_url}/api/v1/resources",
            params={"q": "digits"},
            headers=bearer,
            timeout=60,
            trust_env=False,
        ).json()
        (found,) = page["items"]
        return dict(found["traffic"] or {})

    zeros = {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP64",
                         "data": [0.0] * 64}]}  # fmt: skip
    datatype = httpx.get(f"{platform.url}/v2/models/digits", trust_env=False).json()
    zeros["inputs"][0]["datatype"] = datatype["inputs"][0]["datatype"]
    before = row().get("requests") or 0  # the metadata read above counts as one
    for _ in range(10):
        answer = httpx.post(
            f"{platform.url}/v2/models/digits/infer", json=zeros, timeout=60, trust_env=False
        )
        assert answer.status_code == 200, answer.text
    traffic = row()
    assert traffic["requests"] == before + 10
    # The same figures `kaip cost` reports for the resource (usage basis, since kaip up began).
    report = platform.admin("GET", "/_kaip/cost?by=resource&resource=digits").json()
    (expected,) = report["rows"]
    assert traffic["cost_method"] == expected["method"]
    assert traffic["cost_per_1k_usd"] > 0 and traffic["joules_per_request"] > 0
    assert traffic["cost_per_1k_usd"] == pytest.approx(
        expected["cost_per_1k_requests_usd"], rel=0.5
    )  # read a moment apart: the replica's CPU time moves between the two reads
    catalog = httpx.get(
        f"{platform.admin_url}/", params={"q": "digits"}, headers=bearer, trust_env=False
    ).text
    assert re.search(r'<td class="num">\$[0-9.e-]+( <span[^>]*>≈</span>)?</td>', catalog)
    assert re.search(r'<td class="num">[0-9.e-]+ J</td>', catalog)


def test_the_responses_api_answers_through_the_gateway(platform: LocalPlatform) -> None:
    client = openai.OpenAI(base_url=f"{platform.url}/v1", api_key="unused", max_retries=0)
    response = client.responses.create(model="tiny-lm", input="through the gateway")
    assert (response.output_text, response.status) == ("gateway the through", "completed")
    with pytest.raises(openai.NotFoundError) as refused:
        client.responses.create(model="digits", input="hi")  # digits does not speak OpenAI
    assert "does not serve the OpenAI API" in str(refused.value)


def test_the_runs_token_is_never_written_to_a_log(platform: LocalPlatform) -> None:
    """After every test above used it (pages, API, streams, forms, the CLI's own calls): not in
    kaip up's output, not in any replica's or job's log under .kaip/logs."""
    secret = platform.token
    assert len(secret) >= 32
    listed = platform.cli("status")
    assert listed.returncode == 0 and secret not in listed.stdout + listed.stderr
    logs = [platform.log, *(platform.workdir / ".kaip" / "logs").rglob("*.log")]
    assert len(logs) > 1
    leaked = [str(p) for p in logs if secret.encode() in p.read_bytes()]
    assert leaked == [], leaked

"""The portal's playground in headless Chromium: its prediction equals ``model.predict``.

The quickstart's digits model is trained here (``examples/quickstart/train.py``) and served by
a real ``kaip up``. The logged-in browser opens the Model's page: the playground's request is
already shaped from the model's own metadata (one row of 64 numbers, its datatype); the test
types three digits rows into it and presses Send, and the answer the page shows (through the
real gateway) is what the trained pipeline's ``predict`` says for those rows, with its latency.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest
from local_platform import LocalPlatform, wait_for
from playwright import sync_api as playwright
from sklearn.datasets import load_digits
from test_control_browser import BROWSER_MS, CHROMIUM, browser_args

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
"""


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
    local.up(spec)
    try:
        wait_for(lambda: local.resource("digits")["ready"], "digits to be ready")
        yield local
    finally:
        local.down()


def test_the_playground_prediction_equals_model_predict(platform: LocalPlatform) -> None:
    rows = load_digits().data[[0, 7, 42]]
    expected = joblib.load(platform.spec_dir / "model.joblib").predict(rows).tolist()
    body: dict[str, list[dict[str, object]]] = {
        "inputs": [{"name": "input-0", "shape": [3, 64], "data": rows.ravel().tolist()}]
    }
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
        finally:
            browser.close()

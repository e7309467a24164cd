"""The resource page's overview (kaip.portal.overview): endpoints and snippets from a manifest.

Pure functions over an :class:`~kaip.portal.source.Overview`; the snippets are run for real
against a served Model in tests/e2e_local/test_portal_playground_browser.py.
"""

from __future__ import annotations

import ast
import json
import shlex

from kaip.portal.overview import PLACEHOLDER, endpoints, overview_section, snippets
from kaip.portal.source import Overview


def model(protocols: tuple[str, ...], base: str = "http://127.0.0.1:8080") -> Overview:
    manifest = {"apiVersion": "kaip.dev/v1alpha1", "kind": "Model", "metadata": {"name": "m"}}
    return Overview("Model", manifest, base, ("m", "m-alias"), protocols)


def test_endpoints_follow_the_protocols_and_every_served_name() -> None:
    assert endpoints(model(("oip-v2",))) == [
        ("OIP v2 inference", "POST http://127.0.0.1:8080/v2/models/m/infer"),
        ("OIP v2 metadata", "GET http://127.0.0.1:8080/v2/models/m"),
        ("OIP v2 inference", "POST http://127.0.0.1:8080/v2/models/m-alias/infer"),
        ("OIP v2 metadata", "GET http://127.0.0.1:8080/v2/models/m-alias"),
    ]
    assert [what for what, _ in endpoints(model(("openai",)))] == ["OpenAI chat", "OpenAI models"]
    app = Overview("App", {}, "http://127.0.0.1:8080/apps/web/", (), ())
    assert endpoints(app) == [("the App", "GET http://127.0.0.1:8080/apps/web/")]


def test_a_snippet_takes_the_metadata_shaped_body_or_says_it_is_a_placeholder() -> None:
    shaped = json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32",
                                     "data": [0, 0]}]})  # fmt: skip
    (curl, python) = snippets(model(("oip-v2",)), shaped)
    assert json.loads(shlex.split(curl.code.replace("\\\n", ""))[-1]) == json.loads(shaped)
    assert "'name': 'x'" in python.code
    (curl, _) = snippets(model(("oip-v2",)), "{}")  # the model did not say its inputs
    assert json.loads(shlex.split(curl.code.replace("\\\n", ""))[-1]) == PLACEHOLDER
    assert "did not say its inputs" in overview_section(model(("oip-v2",)), "{}")


def test_a_hostile_base_url_stays_one_argument_and_one_string_literal() -> None:
    base = "http://x/'$(touch /tmp/owned)'\"<b>"
    (curl, python, openai_curl, sdk) = snippets(model(("oip-v2", "openai"), base), None)
    assert shlex.split(curl.code.replace("\\\n", ""))[4] == f"{base}/v2/models/m/infer"
    assert shlex.split(openai_curl.code.replace("\\\n", ""))[4] == f"{base}/v1/chat/completions"
    ast.parse(python.code)
    ast.parse(sdk.code)
    html = overview_section(model(("oip-v2", "openai"), base), None)
    assert "<b>" not in html and "&lt;b&gt;" in html

"""Issue 17 #2: no OpenAI request field is ignored in silence.

A table over the request fields of OpenAI's chat completions and completions APIs: each field
kaip does not implement, set to a value that asks for something, gets a 400 whose OpenAI error
body names it (``param``); its neutral value (asking for nothing) is served. A field the API
does not define is refused too. Real ``kaip serve`` of examples/tiny-lm, the official ``openai``
client and httpx.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from model_server.harness import RunningServer

WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}},
}
# (field, a value that asks for something, the neutral value or None when there is none)
CHAT_FIELDS: list[tuple[str, Any, Any]] = [
    ("tools", [WEATHER_TOOL], []),
    ("tool_choice", "required", "none"),
    ("functions", [WEATHER_TOOL["function"]], []),
    ("function_call", "auto", "none"),
    ("response_format", {"type": "json_object"}, {"type": "text"}),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}, None),
    ("logprobs", True, False),
    ("top_logprobs", 3, 0),
    ("logit_bias", {"50256": -100}, {}),
    ("frequency_penalty", 0.5, 0),
    ("presence_penalty", -1.0, 0.0),
    ("n", 2, 1),
    ("audio", {"voice": "alloy", "format": "wav"}, None),
    ("modalities", ["text", "audio"], ["text"]),
    ("prediction", {"type": "content", "content": "x"}, None),
    ("reasoning_effort", "high", None),
    ("verbosity", "low", None),
    ("web_search_options", {}, None),
    ("service_tier", "flex", "auto"),
    ("store", True, False),
]
COMPLETION_FIELDS: list[tuple[str, Any, Any]] = [
    ("logprobs", 2, 0),
    ("echo", True, False),
    ("best_of", 3, 1),
    ("suffix", " end", ""),
    ("logit_bias", {"50256": -100}, {}),
    ("frequency_penalty", 1.0, 0),
    ("presence_penalty", 0.1, 0),
    ("n", 3, 1),
    ("prompt", ["one prompt", "another prompt"], None),
]
CHAT = {"model": "tiny-lm", "messages": [{"role": "user", "content": "a b c"}], "max_tokens": 3}
COMPLETION = {"model": "tiny-lm", "prompt": "a b c", "max_tokens": 3}


def _post(server: RunningServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/{path}", json=body, timeout=30)


def _assert_refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field
    assert error["type"] == "invalid_request_error"
    assert field in error["message"]


@pytest.mark.parametrize(("field", "value", "neutral"), CHAT_FIELDS)
def test_chat_fields(tiny_lm_server: RunningServer, field: str, value: Any, neutral: Any) -> None:
    _assert_refused(_post(tiny_lm_server, "chat/completions", {**CHAT, field: value}), field)
    if neutral is not None:
        served = _post(tiny_lm_server, "chat/completions", {**CHAT, field: neutral})
        assert served.status_code == 200, served.text
        assert served.json()["choices"][0]["message"]["content"] == "c b a"


@pytest.mark.parametrize(("field", "value", "neutral"), COMPLETION_FIELDS)
def test_completion_fields(
    tiny_lm_server: RunningServer, field: str, value: Any, neutral: Any
) -> None:
    _assert_refused(_post(tiny_lm_server, "completions", {**COMPLETION, field: value}), field)
    if neutral is not None:
        served = _post(tiny_lm_server, "completions", {**COMPLETION, field: neutral})
        assert served.status_code == 200, served.text


@pytest.mark.parametrize("path", ["chat/completions", "completions"])
def test_a_field_openai_does_not_define_is_refused(
    tiny_lm_server: RunningServer, path: str
) -> None:
    body = CHAT if path.startswith("chat") else COMPLETION
    response = _post(tiny_lm_server, path, {**body, "top_k": 5})
    _assert_refused(response, "top_k")
    assert response.json()["error"]["code"] == "unknown_parameter"


def test_the_openai_sdk_sees_the_field_named(tiny_lm_server: RunningServer) -> None:
    client = openai.OpenAI(base_url=f"{tiny_lm_server.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="tiny-lm",
            messages=[{"role": "user", "content": "weather?"}],
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
        )
    assert refused.value.param == "tools"
    assert refused.value.code == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model="tiny-lm", prompt="a b", logprobs=1)
    assert refused.value.param == "logprobs"

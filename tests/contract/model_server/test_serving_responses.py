"""``POST /v1/responses`` on kaip's model server, through the official OpenAI SDK (issue 17 #2).

The tiny-lm model answers a prompt's last line reversed word by word, one token per word, so
every answer here is known exactly: the SDK's ``output_text``, the streamed deltas and the
``usage`` token counts are checked against it. Fields kaip cannot honour are 400s naming them.
"""

from __future__ import annotations

import asyncio

import openai
import pytest

from model_server.harness import RunningServer


@pytest.fixture(scope="module")
def client(tiny_lm_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{tiny_lm_server.url}/v1", api_key="unused", max_retries=0)


def test_a_response_carries_the_text_and_the_engines_counts(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="tiny-lm", instructions="be brief", input="one two three"
    )
    assert response.output_text == "three two one"
    assert (response.status, response.object, response.model) == (
        "completed",
        "response",
        "tiny-lm",
    )
    assert response.usage is not None and response.usage.output_tokens == 3
    assert response.usage.total_tokens == response.usage.input_tokens + 3


def test_messages_and_max_output_tokens_make_an_incomplete_response(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="tiny-lm",
        input=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": [{"type": "input_text", "text": "a b c d e"}]},
        ],
        max_output_tokens=2,
    )
    assert response.output_text == "e d"
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


def test_a_streamed_response_sends_each_piece_then_completed(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="tiny-lm", input="x y z", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added",
    ]  # fmt: skip
    assert kinds[-4:] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["z", " y", " x"] or "".join(deltas) == "z y x"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.output_text == "z y x"


def test_the_async_client_streams_the_same_text(tiny_lm_server: RunningServer) -> None:
    async def scenario() -> str:
        client = openai.AsyncOpenAI(base_url=f"{tiny_lm_server.url}/v1", api_key="unused")
        text = ""
        async with client:
            stream = await client.responses.create(model="tiny-lm", input="p q", stream=True)
            async for event in stream:
                if event.type == "response.output_text.delta":
                    text += event.delta
        return text

    assert asyncio.run(scenario()) == "q p"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tools", [{"type": "function", "name": "f", "parameters": {}}]),
        ("previous_response_id", "resp_123"),
        ("store", True),
        ("text", {"format": {"type": "json_object"}}),
        ("max_output_tokens", 10**7),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_it(
    client: openai.OpenAI, field: str, value: object
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="tiny-lm", input="hi", **{field: value})  # type: ignore[call-overload]
    assert field in str(refused.value)


def test_neutral_values_are_accepted(client: openai.OpenAI) -> None:
    response = client.responses.create(model="tiny-lm", input="m n", store=False, tools=[])
    assert response.output_text == "n m"

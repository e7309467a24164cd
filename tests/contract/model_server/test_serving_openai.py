"""The OpenAI-compatible routes, driven by the official openai client against tiny-lm."""

from __future__ import annotations

import sys

import httpx
import numpy as np
import openai
import pytest

from model_server.harness import ROOT, RunningServer

sys.path.insert(0, str(ROOT / "examples" / "tiny-lm"))
from model import TinyLM

LM = TinyLM("")


@pytest.fixture(scope="module")
def client(tiny_lm_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{tiny_lm_server.url}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["tiny-lm"]
    assert client.models.retrieve("tiny-lm").owned_by == "kaip"


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_equal_the_model(client: openai.OpenAI, encoding: str) -> None:
    texts = ["the cat sat", "on the mat", "kaip"]
    response = client.embeddings.create(
        model="tiny-lm",
        input=texts,
        encoding_format=encoding,  # type: ignore[arg-type]
    )
    if encoding == "base64":  # the client leaves base64 as sent when asked for it explicitly
        import base64

        vectors = [np.frombuffer(base64.b64decode(d.embedding), "<f4") for d in response.data]  # type: ignore[arg-type]
    else:
        vectors = [np.array(d.embedding) for d in response.data]
    np.testing.assert_allclose(np.array(vectors), LM.embed(texts), rtol=1e-6)
    assert [d.index for d in response.data] == [0, 1, 2]
    assert response.usage.prompt_tokens == 7  # words


def test_default_client_embedding_call(client: openai.OpenAI) -> None:
    vector = client.embeddings.create(model="tiny-lm", input="hello world").data[0].embedding
    np.testing.assert_allclose(vector, LM.embed(["hello world"])[0], rtol=1e-6)


def test_chat_completion(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="tiny-lm", messages=[{"role": "user", "content": "one two three"}]
    )
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "three two one"
    assert choice.finish_reason == "stop"
    assert response.usage is not None and response.usage.completion_tokens == 3


def test_chat_streaming_sends_pieces_then_done(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny-lm",
        messages=[{"role": "user", "content": "a b c d e"}],
        stream=True,
        max_tokens=3,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "e d c"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_sse_wire_format_ends_with_done(tiny_lm_server: RunningServer) -> None:
    body = {"model": "tiny-lm", "prompt": "x y", "stream": True}
    with httpx.stream("POST", f"{tiny_lm_server.url}/v1/completions", json=body) as response:
        assert response.headers["content-type"] == "text/event-stream"
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)


def test_completion_with_stop(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model="tiny-lm", prompt="alpha beta gamma", stop=[" alpha"]
    )
    assert response.choices[0].text == "gamma beta"
    assert response.choices[0].finish_reason == "stop"


def test_openai_errors_are_openai_shaped(
    client: openai.OpenAI, tiny_lm_server: RunningServer
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny-lm", messages=[])
    raw = httpx.post(f"{tiny_lm_server.url}/v1/completions", content=b"[1")
    assert raw.status_code == 400
    assert set(raw.json()["error"]) == {"message", "type", "param", "code"}


def test_the_same_model_over_oip(tiny_lm_server: RunningServer) -> None:
    body = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    response = httpx.post(f"{tiny_lm_server.url}/v2/models/tiny-lm/infer", json=body)
    assert response.json()["outputs"][0]["data"] == [3.0, 7.0]


def test_genai_histograms_on_metrics(client: openai.OpenAI, tiny_lm_server: RunningServer) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client.chat.completions.create(model="tiny-lm", messages=[{"role": "user", "content": "a b"}])
    text = httpx.get(f"{tiny_lm_server.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("gen_ai_server_request_duration_seconds",
                 "gen_ai_server_time_to_first_token_seconds",
                 "gen_ai_server_time_per_output_token_seconds"):  # fmt: skip
        counts = [s for s in families[name].samples if s.name.endswith("_count")]
        chat = [s for s in counts if s.labels["gen_ai_operation_name"] == "chat"]
        assert chat and chat[0].value >= 1, name
        assert chat[0].labels["gen_ai_request_model"] == "tiny-lm"
        # what the operator's TTFT/TPOT gates select a revision's pods by, as on kaip's series
        assert chat[0].labels["model"] == "tiny-lm" and chat[0].labels["revision"], chat[0]


SLOW_TINY_LM = """

class Slow(TinyLM):
    def generate(self, prompt, **params):  # type: ignore[no-untyped-def]
        import time

        time.sleep(3.0)
        yield from super().generate(prompt, **params)
"""


def test_a_generation_counts_as_in_flight_while_it_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """kaip_inflight_requests (the HPA's metric on a cluster, an InferencePool picker's queue)
    counts OpenAI requests, not only OIP ones, for as long as they run."""
    import shutil
    import threading
    import time

    from prometheus_client.parser import text_string_to_metric_families

    from model_server.harness import start_server

    spec = tmp_path_factory.mktemp("slow-lm") / "spec"
    shutil.copytree(ROOT / "examples" / "tiny-lm", spec)
    (spec / "model.py").write_text((spec / "model.py").read_text() + SLOW_TINY_LM)
    text = (spec / "kaip.yaml").read_text()
    (spec / "kaip.yaml").write_text(
        text.replace("entrypoint: model:TinyLM", "entrypoint: model:Slow")
    )
    server = start_server(spec, "tiny-lm", tmp_path_factory.mktemp("slow-lm-server"))
    try:

        def in_flight() -> float:
            exposition = httpx.get(f"{server.url}/metrics", timeout=30).text
            return sum(
                s.value
                for f in text_string_to_metric_families(exposition)
                for s in f.samples
                if s.name == "kaip_inflight_requests"
            )

        assert in_flight() == 0
        body = {"model": "tiny-lm", "messages": [{"role": "user", "content": "a b"}]}
        answered: list[int] = []
        request = threading.Thread(
            target=lambda: answered.append(
                httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60).status_code
            )
        )
        request.start()
        seen = 0.0
        deadline = time.monotonic() + 30
        while not answered and time.monotonic() < deadline and seen == 0:
            seen = in_flight()
            time.sleep(0.05)
        request.join(60)
        assert seen == 1, "the generation was never counted in flight"
        assert answered == [200]
        assert in_flight() == 0
    finally:
        server.stop()

"""A GGUF model on llama.cpp behind ``kaip up``'s gateway, driven by the official ``openai`` SDK
(issue 17, must-show #1 and #2).

examples/llm's own script writes the tiny model (fixed seed, real vocabulary, random weights), and
``kaip up examples/llm`` serves it. What the gateway answers is compared with llama.cpp itself,
loaded in this test process from the same file: the text at temperature 0 and the token counts
of ``usage`` are the engine's. The replica's ``/metrics`` tells what the engine did
(:data:`kaip.telemetry.ENGINE_TOKENS`, :data:`kaip.telemetry.ENGINE_BUSY`).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from local_platform import LocalPlatform, wait_for
from prometheus_client.parser import text_string_to_metric_families

llama_cpp = pytest.importorskip("llama_cpp", reason="format gguf needs kaip[llm]")

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny-llama"
PROMPT = "the sea and the river"
CONTEXT = 2048


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/llm copied, its GGUF written by its own script."""
    directory = tmp_path_factory.mktemp("llm") / "spec"
    shutil.copytree(ROOT / "examples" / "llm", directory)
    gguf = directory / "tiny-llama.gguf"
    command = [sys.executable, str(directory / "make_gguf.py"), str(gguf)]
    subprocess.run([*command, "--context", str(CONTEXT)], check=True, capture_output=True)
    spec = directory / "kaip.yaml"
    # One replica, whatever the load: the tests read its engine's own counters and slots.
    text = spec.read_text().replace("maxTokens: 256", "maxTokens: 2000")
    spec.write_text(text.rstrip("\n") + "\n  scaling: {minReplicas: 1, maxReplicas: 1}\n")
    return directory


@pytest.fixture(scope="module")
def engine(spec_dir: Path) -> Any:
    """llama.cpp on the same file, in this process: what the gateway's answers must equal."""
    return llama_cpp.Llama(
        model_path=str(spec_dir / "tiny-llama.gguf"), n_ctx=CONTEXT, seed=0, verbose=False
    )


@pytest.fixture(scope="module")
def gateway(spec_dir: Path) -> Iterator[LocalPlatform]:
    platform = LocalPlatform(spec_dir.parent / "work")
    platform.workdir.mkdir()
    platform.up(spec_dir)
    try:
        yield platform
    finally:
        platform.down()


@pytest.fixture(scope="module")
def client(gateway: LocalPlatform) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=120)


def _direct(engine: Any, prompt: str, max_tokens: int) -> dict[str, Any]:
    answer = engine.create_completion(prompt, max_tokens=max_tokens, temperature=0.0)
    return dict(answer)


def _replica_metrics(gateway: LocalPlatform) -> dict[tuple[str, str], float]:
    """The replica's engine samples: (metric, kind label) -> value."""
    [replica] = [r for r in gateway.resource(MODEL)["replicas"] if r.get("port")]
    text = httpx.get(f"http://127.0.0.1:{replica['port']}/metrics", timeout=30).text
    return {
        (sample.name, sample.labels.get("kind", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("kaip_engine_")
    }


def test_completion_is_the_engines_text_and_counts(client: openai.OpenAI, engine: Any) -> None:
    expected = _direct(engine, PROMPT, 24)
    answer = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=24, temperature=0)
    assert answer.choices[0].text == expected["choices"][0]["text"]
    assert answer.choices[0].text.strip(), "the model said nothing: the test proves nothing"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == len(engine.tokenize(PROMPT.encode(), special=True))
    assert answer.usage.prompt_tokens == expected["usage"]["prompt_tokens"]
    assert answer.usage.completion_tokens == expected["usage"]["completion_tokens"]
    assert answer.choices[0].finish_reason == expected["choices"][0]["finish_reason"]


def test_streaming_gives_the_same_text_token_by_token(client: openai.OpenAI, engine: Any) -> None:
    whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=24, temperature=0)
    chunks = list(
        client.completions.create(
            model=MODEL, prompt=PROMPT, max_tokens=24, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    pieces = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    assert "".join(pieces) == whole.choices[0].text
    assert len(pieces) > 1  # streamed as generated, not in one piece
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_chat_uses_the_models_template(client: openai.OpenAI, engine: Any) -> None:
    messages = [{"role": "user", "content": "tell me about the sea"}]
    prompt = "user: tell me about the sea\nassistant:"  # examples/llm/make_gguf.py's template
    expected = _direct(engine, prompt, 16)
    answer = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=16,
        temperature=0,  # type: ignore[arg-type]
    )
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == expected["choices"][0]["text"]
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == expected["usage"]["prompt_tokens"]

    stream = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=16, temperature=0, stream=True,  # type: ignore[arg-type]
    )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == expected["choices"][0]["text"]


def test_async_client_streams_chat(gateway: LocalPlatform, engine: Any) -> None:
    async def main() -> str:
        client = openai.AsyncOpenAI(
            base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=120
        )
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "the moon"}],
            max_tokens=12, temperature=0, stream=True,
        )  # fmt: skip
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await client.close()
        return text

    expected = _direct(engine, "user: the moon\nassistant:", 12)["choices"][0]["text"]
    assert asyncio.run(main()) == expected


def test_a_stop_sequence_cuts_exactly(client: openai.OpenAI) -> None:
    text = (
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=32, temperature=0)
        .choices[0]
        .text
    )
    words = text.split()
    assert len(words) >= 4, f"too little text to cut: {text!r}"
    stop = f"{words[2]} {words[3]}"
    cut = text.index(stop)
    answer = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=32, temperature=0, stop=[stop]
    )
    assert answer.choices[0].text == text[:cut]
    assert answer.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=32, temperature=0, stop=stop, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == text[:cut]


def test_32_concurrent_streams_match_one_by_one(gateway: LocalPlatform) -> None:
    prompts = [f"{word} and the sea" for word in ("water", "fire", "night", "stone")] * 8

    async def one(client: openai.AsyncOpenAI, prompt: str) -> str:
        stream = await client.completions.create(
            model=MODEL, prompt=prompt, max_tokens=16, temperature=0, stream=True
        )
        return "".join([c.choices[0].text async for c in stream if c.choices])

    async def main() -> tuple[list[str], list[str]]:
        client = openai.AsyncOpenAI(
            base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=300
        )
        alone = [await one(client, p) for p in prompts[:4]]
        together = await asyncio.gather(*(one(client, p) for p in prompts))
        await client.close()
        return alone, list(together)

    alone, together = asyncio.run(main())
    assert together == alone * 8
    assert len(set(alone)) > 1, "every prompt gave the same text: the test proves little"


def test_a_client_that_disconnects_frees_the_engine(
    client: openai.OpenAI, gateway: LocalPlatform
) -> None:
    before = _replica_metrics(gateway)[("kaip_engine_tokens_total", "generated")]
    stream = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=2000, temperature=0, stream=True
    )
    for _ in zip(range(3), stream, strict=False):
        pass
    stream.close()  # the client goes away mid-stream
    wait_for(
        lambda: _replica_metrics(gateway)[("kaip_engine_busy", "")] == 0,
        "the engine to be released",
    )
    after = _replica_metrics(gateway)[("kaip_engine_tokens_total", "generated")]
    # It stopped: 2,000 tokens were asked for; what ran was at most what the pieces in flight
    # between engine and client hold (the replica's window of 64, the sockets' buffers).
    assert 3 <= after - before < 1000
    answer = client.completions.create(model=MODEL, prompt="the sea", max_tokens=4, temperature=0)
    assert answer.usage is not None and answer.usage.completion_tokens == 4


def test_prompt_cache_hits_are_counted(client: openai.OpenAI, gateway: LocalPlatform) -> None:
    shared = " ".join(["the sea and the river and the mountain"] * 8)
    before = _replica_metrics(gateway)
    for tail in ("north", "south"):
        client.completions.create(
            model=MODEL, prompt=f"{shared} {tail}", max_tokens=2, temperature=0
        )
    after = _replica_metrics(gateway)
    cached = (
        after[("kaip_engine_tokens_total", "prompt_cached")]
        - before[("kaip_engine_tokens_total", "prompt_cached")]
    )
    # the second prompt's shared prefix was in the KV cache, not evaluated again
    assert cached >= 50

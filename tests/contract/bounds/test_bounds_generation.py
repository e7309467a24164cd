"""Issue 11, #3 and #4: no generation outlives its client, its deadline or its threads, and no
request's stop strings or max_tokens can freeze the model server.

Real ``python -m kaip.serving`` processes serve the endless test models (pieces forever, and a
model stuck inside ``generate``) and tiny-lm; the official ``openai`` client and httpx drive
them. Each attack runs under :func:`bounds.harness.measured`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest
from model_server.harness import HERE, ROOT, RunningServer, start_server, write_spec

from bounds.harness import measured, repeat_for

MODELS = HERE / "models"


def _endless_spec(directory: Path, entry: str = "Endless", **serve: object) -> Path:
    uri = (MODELS / "endless.py").as_uri()
    artifact = f"uri: {uri}\n    format: python\n    entrypoint: endless:{entry}\n    trust: true"
    serve.setdefault("protocols", "[openai, oip-v2]")
    return write_spec(directory, "endless", artifact, **serve)


def _start(
    tmp: Path, entry: str = "Endless", env: dict[str, str] | None = None, **serve: object
) -> RunningServer:
    spec = _endless_spec(tmp / "spec", entry, **serve)
    return start_server(spec, "endless", tmp / "server", env=env)


@pytest.fixture(scope="module")
def endless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # A long timeoutSeconds, so that only cancellation (not the deadline) can end a generation.
    server = _start(tmp_path_factory.mktemp("endless"), timeoutSeconds=300)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("tiny-lm")
    (directory / "spec").mkdir()
    spec = (ROOT / "examples" / "tiny-lm" / "kaip.yaml").read_text()
    uri = (ROOT / "examples" / "tiny-lm" / "model.py").as_uri()
    (directory / "spec" / "kaip.yaml").write_text(
        spec.replace("uri: model.py", f"uri: {uri}") + "    maxTokens: 64\n"
    )
    server = start_server(directory / "spec", "tiny-lm", directory / "server")
    yield server
    server.stop()


def _client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30)


def _running(server: RunningServer) -> int:
    """Generations of the endless model that have started and not ended (its predict says)."""
    row = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0]}]}
    answer = httpx.post(f"{server.url}/v2/models/endless/infer", json=row, timeout=10)
    return int(answer.json()["outputs"][0]["data"][0])


def _wait(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> float:
    """Seconds until ``condition()`` held; fails naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"never happened within {timeout:g} s: {what}")
        time.sleep(0.01)
    return time.monotonic() - started


# -- #3: generation is cancelled, bounded and on threads of its own --------------------------------


def test_a_stream_whose_client_goes_away_stops_generating(endless: RunningServer) -> None:
    client = _client(endless)
    stopped_after: list[float] = []

    def attack() -> None:
        stream = client.chat.completions.create(
            model="endless", messages=[{"role": "user", "content": "go"}], stream=True,
            max_tokens=4096,
        )  # fmt: skip
        for _ in zip(range(3), stream, strict=False):
            pass
        assert _running(endless) == 1
        stream.close()
        stopped_after.append(_wait(lambda: _running(endless) == 0, "the generation stopped"))

    with measured(endless.process.pid, endless.port) as measurement:
        repeat_for(3.0, attack)
    measurement.check()
    measurement.assert_quick(stopped_after)


def test_a_completion_whose_client_goes_away_stops_generating(endless: RunningServer) -> None:
    body = {"model": "endless", "prompt": "go", "max_tokens": 4096}
    with measured(endless.process.pid, endless.port) as measurement:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{endless.url}/v1/completions", json=body, timeout=0.5)
        stopped_after = [_wait(lambda: _running(endless) == 0, "the generation stopped")]
        time.sleep(2.0)  # enough probes to judge
    measurement.check()
    measurement.assert_quick(stopped_after)


def test_a_stream_ends_at_the_models_timeout(tmp_path: Path) -> None:
    server = _start(tmp_path, timeoutSeconds=1.5)
    try:
        stream = _client(server).completions.create(
            model="endless", prompt="go", stream=True, max_tokens=4096
        )
        with pytest.raises(openai.APIError, match=r"timeoutSeconds \(1.5 s\)"):
            for _ in stream:
                pass
        _wait(lambda: _running(server) == 0, "the generation stopped")
    finally:
        assert server.stop() == 0


def test_streams_cannot_starve_embeddings(endless: RunningServer) -> None:
    """The issue's reproduction: 8 streams held every thread of the default executor."""
    client = _client(endless)
    streams = [
        client.completions.create(model="endless", prompt="go", stream=True, max_tokens=4096)
        for _ in range(8)
    ]
    try:
        vector = client.with_options(timeout=10).embeddings.create(model="endless", input="hi")
        assert vector.data[0].embedding == [1.0, 1.0, 1.0, 1.0]
    finally:
        for stream in streams:
            stream.close()
    _wait(lambda: _running(endless) == 0, "every generation stopped")


def test_liveness_fails_once_every_generation_thread_is_stuck(tmp_path: Path) -> None:
    env = {"KAIP_SERVING__GENERATION_WORKERS": "2"}
    server = _start(tmp_path, "Stuck", env=env, timeoutSeconds=1)
    live = f"{server.url}/v2/health/live"
    body = {"model": "endless", "prompt": "go", "max_tokens": 16}
    try:
        first = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30)
        assert first.status_code == 503 and "timeoutSeconds" in first.text
        time.sleep(1.5)  # past the stall threshold: one thread of two is stuck, still live
        assert httpx.get(live).status_code == 200
        assert httpx.post(f"{server.url}/v1/completions", json=body, timeout=30).status_code == 503
        _wait(lambda: httpx.get(live).status_code == 503, "liveness reports the wedged pool")
        answer = httpx.get(live).json()
        assert answer["live"] is False and "2 generation threads" in answer["reason"]
    finally:
        assert server.stop() == 0


def test_max_tokens_over_the_models_limit_is_refused(tiny_lm: RunningServer) -> None:
    client = _client(tiny_lm)
    refused_after: list[float] = []

    def attack() -> None:
        started = time.monotonic()
        with pytest.raises(openai.BadRequestError, match=r"serve\.maxTokens") as caught:
            client.completions.create(model="tiny-lm", prompt="a b c", max_tokens=10**9)
        refused_after.append(time.monotonic() - started)
        assert "limit of 64" in str(caught.value)

    with measured(tiny_lm.process.pid, tiny_lm.port) as measurement:
        repeat_for(3.0, attack)
    measurement.check()
    measurement.assert_quick(refused_after)
    answer = client.completions.create(model="tiny-lm", prompt="a b c", max_tokens=64)
    assert answer.choices[0].text == "c b a"


# -- #4: stop strings ---------------------------------------------------------------------------


def test_thousands_of_stop_strings_are_refused(tiny_lm: RunningServer) -> None:
    """The issue's reproduction: 1,000 words and 20,000 stop strings (211 KB)."""
    prompt = " ".join(f"w{i}" for i in range(1000))
    stops = [f"never-{i:05d}" for i in range(20_000)]
    body = orjson.dumps({"model": "tiny-lm", "prompt": prompt, "stop": stops, "max_tokens": 64})
    refused_after: list[float] = []

    def attack() -> None:
        started = time.monotonic()
        answer = httpx.post(f"{tiny_lm.url}/v1/completions", content=body, timeout=30)
        refused_after.append(time.monotonic() - started)
        assert answer.status_code == 400 and "at most 4" in answer.json()["error"]["message"]

    with measured(tiny_lm.process.pid, tiny_lm.port) as measurement:
        repeat_for(3.0, attack)
    measurement.check()
    measurement.assert_quick(refused_after)
    with pytest.raises(openai.BadRequestError, match="1 to 1024 characters"):
        _client(tiny_lm).completions.create(model="tiny-lm", prompt="a", stop=["x" * 1025])


def test_stop_strings_are_matched_against_new_text_only(tmp_path: Path) -> None:
    """4 stop strings of the longest length that never match, over 4,096 pieces of 32 KiB:
    matching against the whole text so far would scan terabytes and hold 128 MiB."""
    env = {"KAIP_TEST_PIECE_SLEEP": "0"}
    server = _start(tmp_path, env=env, timeoutSeconds=120)
    body = {
        "model": "endless",
        "prompt": str(32 * 1024),
        "max_tokens": 4096,
        "stop": [c * 1024 for c in "abcd"],
        "stream": True,
    }
    tails: list[bytes] = []

    def attack() -> None:
        tail = b""
        with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as answer:
            for chunk in answer.iter_raw(1 << 20):
                tail = (tail + chunk)[-4096:]
        tails.append(tail)

    try:
        with measured(server.process.pid, server.port) as measurement:
            repeat_for(3.0, attack)  # one stream can end before enough probes to judge
        measurement.check()
        for tail in tails:
            assert b'"finish_reason":"length"' in tail and tail.endswith(b"data: [DONE]\n\n")
    finally:
        assert server.stop() == 0

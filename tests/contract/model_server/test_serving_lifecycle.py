"""Limits and lifecycle of the server process: ready line, 413, 503 when full or late, SIGTERM
drain, and refusals at start-up (untrusted pickle, unknown model)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from model_server.harness import RunningServer, counting_spec, start_server

ROW = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}


def test_ready_line_is_json_with_the_bound_port(digits_server: RunningServer) -> None:
    line = json.loads(digits_server.stdout.splitlines()[0])
    assert line["event"] == "ready" and line["model"] == "digits"
    assert line["port"] == digits_server.port
    assert line["url"] == digits_server.url


def test_oversized_bodies_get_413(tmp_path: Path) -> None:
    spec = counting_spec(tmp_path / "spec", maxRequestBytes=2048)
    server = start_server(spec, "counting", tmp_path / "server")
    try:
        url = f"{server.url}/v2/models/counting/infer"
        big = {"inputs": [{"name": "x", "shape": [1, 1000], "datatype": "FP32",
                           "data": [1.0] * 1000}]}  # fmt: skip
        declared = httpx.post(url, json=big)
        assert declared.status_code == 413 and "maxRequestBytes" in declared.json()["error"]
        chunks = (json.dumps(big).encode()[i : i + 512] for i in range(0, 6000, 512))
        chunked = httpx.post(url, content=chunks)
        assert chunked.status_code == 413
        assert httpx.post(url, json=ROW).status_code == 200
    finally:
        assert server.stop() == 0


def test_full_queue_and_timeouts_answer_503_with_retry_after(tmp_path: Path) -> None:
    # Each predict takes 1 s and a request may wait 0.3 s: the first request times out while
    # predicting, the second while queued (and keeps its slot until the batcher next looks),
    # so the rest, arriving within that second, find the queue full.
    spec = counting_spec(tmp_path / "spec", timeoutSeconds=0.3)
    env = {"KAIP_SERVING__MAX_QUEUE": "1", "KAIP_TEST_PREDICT_SLEEP": "1.0"}
    server = start_server(spec, "counting", tmp_path / "server", env=env)
    try:
        url = f"{server.url}/v2/models/counting/infer"
        responses: list[httpx.Response] = []

        def send() -> None:
            responses.append(httpx.post(url, json=ROW, timeout=10))

        threads = [threading.Thread(target=send) for _ in range(6)]
        for t in threads:
            t.start()
            time.sleep(0.02)
        for t in threads:
            t.join()
        assert {r.status_code for r in responses} == {503}
        overloaded = [r for r in responses if r.status_code == 503]
        assert all(r.headers["retry-after"] == "1" for r in overloaded)
        messages = " ".join(r.json()["error"] for r in overloaded)
        assert "queue is full" in messages
        assert "timeoutSeconds" in messages
    finally:
        assert server.stop() == 0


def test_a_slow_generation_answers_503_after_timeout_seconds(tmp_path: Path) -> None:
    spec = counting_spec(tmp_path / "spec", timeoutSeconds=0.5, protocols="[openai]")
    env = {"KAIP_TEST_PREDICT_SLEEP": "0.1"}
    server = start_server(spec, "counting", tmp_path / "server", env=env)
    try:
        body = {"model": "counting", "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 1000}  # fmt: skip
        response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=10)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "timeoutSeconds" in response.json()["error"]["message"]
    finally:
        assert server.stop() == 0


def inflight(server: RunningServer) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics").text
    (family,) = [
        f for f in text_string_to_metric_families(text) if f.name == "kaip_inflight_requests"
    ]
    return float(family.samples[0].value)


def test_sigterm_drains_in_flight_requests_then_exits_0(tmp_path: Path) -> None:
    spec = counting_spec(tmp_path / "spec")
    env = {"KAIP_TEST_PREDICT_SLEEP": "1.0"}
    server = start_server(spec, "counting", tmp_path / "server", env=env)
    url = f"{server.url}/v2/models/counting/infer"
    responses: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda: responses.append(httpx.post(url, json=ROW, timeout=10)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while inflight(server) < 3 and time.monotonic() < deadline:  # all three are in
        time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    for t in threads:
        t.join()
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert server.process.wait(15) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v2/health/live")


def test_sigterm_tells_keep_alive_clients_to_reconnect_then_exits_0(tmp_path: Path) -> None:
    """A pod leaves a Service's endpoints while clients still hold keep-alive connections to
    it: after SIGTERM it answers them with ``Connection: close`` (so the next request goes to a
    new connection, elsewhere) and reports not ready, then exits once none is left."""
    spec = counting_spec(tmp_path / "spec")
    env = {"KAIP_SERVING__DRAIN_SECONDS": "60"}  # an upper bound: it ends when clients are gone
    server = start_server(spec, "counting", tmp_path / "server", env=env)
    url = f"{server.url}/v2/models/counting/infer"
    with httpx.Client(timeout=10) as client:
        assert client.post(url, json=ROW).status_code == 200
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while httpx.get(f"{server.url}/v2/health/ready").status_code != 503:
            assert time.monotonic() < deadline, "never reported not ready"
            time.sleep(0.05)
        kept = client.post(url, json=ROW)  # on the connection opened before SIGTERM
        assert kept.status_code == 200
        assert kept.headers["connection"] == "close"
    assert server.process.wait(15) == 0
    assert "drained; stopping" in server.stderr


def run_server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaip.serving", *args, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_pickle_with_the_wrong_digest_is_refused(quickstart_dir: Path, tmp_path: Path) -> None:
    spec = quickstart_dir / "kaip.yaml"
    text = spec.read_text().replace("trust: true", "sha256: " + "0" * 64)
    pinned = tmp_path / "kaip.yaml"
    pinned.write_text(text.replace("uri: model.joblib", f"uri: {quickstart_dir}/model.joblib"))
    result = run_server(str(pinned), "--model", "digits")
    assert result.returncode == 2
    assert "sha256" in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_model_name_is_a_usage_error(quickstart_dir: Path) -> None:
    result = run_server(str(quickstart_dir), "--model", "nope")
    assert result.returncode == 2
    assert "no Model named 'nope'" in result.stderr and "digits" in result.stderr

"""``kaip up`` scales a llama.cpp Model on its engine's KV-cache use (issue 17 #5, locally).

examples/llm's tiny GGUF (its own script, a 256-token context) with ``targetKvCacheUsage: 0.3``
and a concurrency target no load here reaches: one client sending long prompts one after another
(one request in flight) fills the replica's context past the target, and only the KV-cache need
can ask for the second replica. When the client stops, the replica's gauge still reads its last
conversation (llama.cpp keeps it as cache for the next prompt), above the target, and the
Model goes back to one replica all the same: kaip up counts KV-cache use only while requests are
in flight (:mod:`kaip.policy.scaling`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from local_platform import LocalPlatform, wait_for
from prometheus_client.parser import text_string_to_metric_families

from kaip.telemetry import KV_CACHE_USAGE

pytest.importorskip("llama_cpp", reason="format gguf needs kaip[llm]")

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny-llama"
CONTEXT = 256
TARGET = 0.3
PROMPT = " ".join(["the sea and the river"] * 24)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    work = tmp_path_factory.mktemp("llm-kv")
    directory = work / "spec"
    shutil.copytree(ROOT / "examples" / "llm", directory)
    gguf = directory / "tiny-llama.gguf"
    command = [sys.executable, str(directory / "make_gguf.py"), str(gguf)]
    subprocess.run([*command, "--context", str(CONTEXT)], check=True, capture_output=True)
    spec = directory / "kaip.yaml"
    scaling = (
        "  scaling: {minReplicas: 1, maxReplicas: 2, targetConcurrency: 64, "
        f"targetKvCacheUsage: {TARGET}}}\n"
    )
    spec.write_text(spec.read_text().rstrip("\n") + "\n" + scaling)
    running = LocalPlatform(work / "run")
    running.workdir.mkdir()
    running.up(directory)
    try:
        yield running
    finally:
        running.down()


def kv_cache_usage(platform: LocalPlatform) -> list[float]:
    """Each serving replica's own gauge (one being stopped after a scale-in is listed while
    it drains, its port already closed: not serving)."""
    out = []
    for replica in platform.resource(MODEL)["replicas"]:
        if not replica.get("port") or replica.get("phase") != "ready":
            continue
        text = httpx.get(f"http://127.0.0.1:{replica['port']}/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            if family.name == KV_CACHE_USAGE:
                out += [sample.value for sample in family.samples]
    return out


def test_kv_cache_use_past_its_target_adds_a_replica_and_idle_cache_does_not_keep_it(
    platform: LocalPlatform,
) -> None:
    client = openai.OpenAI(
        base_url=f"{platform.url}/v1", api_key="unused", max_retries=0, timeout=120
    )
    prompt_tokens = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=1, temperature=0
    ).usage
    assert prompt_tokens is not None and prompt_tokens.prompt_tokens > TARGET * 1.2 * CONTEXT
    assert platform.resource(MODEL)["desired"] == 1
    stop = threading.Event()
    failures: list[BaseException] = []

    def load() -> None:
        while not stop.is_set():
            try:
                client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=48, temperature=0)
            except Exception as exc:  # the test's assertion says what happened
                failures.append(exc)
                return

    sender = threading.Thread(target=load, daemon=True)
    sender.start()
    try:
        wait_for(
            lambda: platform.resource(MODEL)["desired"] == 2,
            "a second replica for the KV cache",
        )
        reason = platform.resource(MODEL)["scaling"]
        assert reason.startswith("KV cache ") and f"target {TARGET:.0%}" in reason, reason
    finally:
        stop.set()
        sender.join(120)
    assert not failures, failures
    wait_for(lambda: platform.resource(MODEL)["desired"] == 1, "back to one replica when idle")
    assert max(kv_cache_usage(platform)) > TARGET * (1 + 0.1), (
        "the idle replicas' gauges no longer read above the target: the test proves less"
    )

"""A real llama.cpp replica's KV-cache use on ``/metrics`` (issue 17 #5: scale on KV-cache use,
and what the Inference Extension's endpoint picker reads as KV-cache utilization).

examples/llm's GGUF (context 512 tokens) served by ``python -m kaip.serving``: before any
request the engine's context holds nothing; after a completion it holds that completion's
prompt and the tokens generated after it (llama.cpp keeps them for the next prompt's prefix), so
``kaip_kv_cache_usage_ratio`` is that many tokens over 512 (the prompt's from ``usage``, the
generated ones from the engine's own count). The name is the one the rendered endpoint picker
and autoscalers ask for.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kaip import telemetry
from kaip.render.kube.inference_pool import KV_CACHE_METRIC as PICKER_KV_METRIC
from kaip.render.kube.serving import KV_CACHE_METRIC as AUTOSCALER_KV_METRIC
from model_server.harness import ROOT, RunningServer, start_server

pytest.importorskip("llama_cpp", reason="format gguf needs kaip[llm]")

CONTEXT = 512


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("llama") / "spec"
    shutil.copytree(ROOT / "examples" / "llm", directory)
    command = [sys.executable, str(directory / "make_gguf.py"), str(directory / "tiny-llama.gguf")]
    subprocess.run([*command, "--context", str(CONTEXT)], check=True, capture_output=True)
    server = start_server(directory, "tiny-llama", directory.parent / "server", timeout=120)
    yield server
    server.stop()


def samples(server: RunningServer) -> dict[tuple[str, str], float]:
    """The replica's KV-cache gauge and engine token counts: (name, revision or kind) -> value."""
    text = httpx.get(f"{server.url}/metrics", timeout=30, trust_env=False).text
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == telemetry.KV_CACHE_USAGE:
                assert sample.labels["model"] == "tiny-llama"
                found[(sample.name, sample.labels["revision"])] = sample.value
            elif sample.name == telemetry.ENGINE_TOKENS:
                found[(sample.name, sample.labels["kind"])] = sample.value
    return found


def test_the_replica_exports_its_engines_kv_cache_use_under_the_name_the_picker_reads(
    llama_server: RunningServer,
) -> None:
    assert telemetry.KV_CACHE_USAGE == PICKER_KV_METRIC == AUTOSCALER_KV_METRIC
    usage_key = (telemetry.KV_CACHE_USAGE, "1")
    assert samples(llama_server)[usage_key] == 0.0
    prompt = " ".join(["the sea and the river and the mountain"] * 6)
    answer = httpx.post(
        f"{llama_server.url}/v1/completions",
        json={"model": "tiny-llama", "prompt": prompt, "max_tokens": 8, "temperature": 0},
        timeout=120,
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text
    prompt_tokens = answer.json()["usage"]["prompt_tokens"]
    assert prompt_tokens > 40
    after = samples(llama_server)
    generated = after[(telemetry.ENGINE_TOKENS, "generated")]
    assert generated == 8  # the engine stopped at max_tokens, not where its reader cancelled it
    # the context holds the prompt and the tokens generated after it, all but the last (which
    # llama.cpp samples and never evaluates): a share of the 512-token context
    assert after[usage_key] == pytest.approx((prompt_tokens + generated - 1) / CONTEXT)

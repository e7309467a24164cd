"""A client that disconnects mid-stream frees the engine's slot, through the gateway and the
relay (issue 17's must-show, for a Model served by an engine's own server).

The engine is real: llama.cpp's server (llama-cpp-python's ``llama_cpp.server``, one model, one
generation at a time) behind ``kaip up``'s gateway and replica, on the tiny GGUF of
examples/llm. Two of its settings make the test able to fail:

- ``--interrupt_requests False``: by default llama_cpp.server breaks off a running stream as
  soon as another request waits, which would free the slot whether or not the relay passed the
  disconnect on;
- the byte tokens are banned through ``logit_bias``: the random model emits bytes that look like
  the start of a UTF-8 sequence, and llama-cpp-python holds back a stream's text while they
  lead, so its events would come only once the whole generation was done.

What the engine did is read from its own log (the replica's, each line prefixed
``[llama-server]``), never from how long anything took: llama.cpp prints ``eval time = ... / N
runs`` when a generation finishes, and llama_cpp.server ``Disconnected from client`` when it
drops one. The client asks for a generation as long as the context allows, reads three chunks and
closes; then a second request streams to the end. The engine must say it dropped the first and
finish the second without ever finishing the first: had the disconnect stopped at the relay, the
engine would have run the first to its end (its ``N runs`` line, ~2,000) before it took the
second.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from local_platform import LocalPlatform, wait_for

pytest.importorskip("llama_cpp", reason="optional extra kaip[llm] is not installed")
pytest.importorskip(
    "sse_starlette", reason="optional extra kaip[llm-server] is not installed"
)  # llama_cpp.server's own dependencies

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny-llama-server"
CONTEXT = 2048
LONG = CONTEXT - 64
BYTE_TOKENS = range(3, 3 + 256)  # make_gguf.py: <unk>, <s>, </s>, then <0x00>..<0xFF>
NO_BYTES = {str(token): -100 for token in BYTE_TOKENS}
FINISHED = re.compile(r"\[llama-server\] llama_perf_context_print: +eval time = .* / +(\d+) runs")
DROPPED = "[llama-server] Disconnected from client"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    """examples/llm-engine with a 2,048-token GGUF, one replica, the engine's stdout unbuffered
    (llama_cpp.server prints its disconnects there) and its interruption off."""
    directory = tmp_path_factory.mktemp("disconnect")
    spec_dir = directory / "spec"
    shutil.copytree(ROOT / "examples" / "llm-engine", spec_dir)
    gguf = spec_dir / "tiny-llama.gguf"
    command = [sys.executable, str(ROOT / "examples" / "llm" / "make_gguf.py"), str(gguf)]
    subprocess.run([*command, "--context", str(CONTEXT)], check=True, capture_output=True)
    spec = spec_dir / "kaip.yaml"
    args = f'args: [--n_ctx, "{CONTEXT}", --interrupt_requests, "False"]'
    text = spec.read_text().replace('args: [--n_ctx, "512"]', args)
    assert args in text
    spec.write_text(
        text + "  env: {PYTHONUNBUFFERED: '1'}\n  scaling: {minReplicas: 1, maxReplicas: 1}\n"
    )
    platform = LocalPlatform(directory / "work")
    platform.workdir.mkdir()
    try:
        platform.up(spec_dir)
        yield platform
    finally:
        platform.down()


def _replica_log(gateway: LocalPlatform) -> Path:
    [replica] = [r for r in gateway.resource(MODEL)["replicas"] if r.get("port")]
    return Path(replica["log"])


def test_a_client_that_disconnects_mid_stream_frees_the_engines_slot(
    gateway: LocalPlatform,
) -> None:
    client = openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=300
    )
    log = _replica_log(gateway)
    start = len(log.read_bytes())

    def since_start() -> str:
        return log.read_bytes()[start:].decode(errors="replace")

    first = client.completions.create(
        model=MODEL, prompt="the sea and the river", max_tokens=LONG, temperature=0, stream=True,
        logit_bias=NO_BYTES,
    )  # fmt: skip
    pieces = []
    for chunk in first:
        if chunk.choices and chunk.choices[0].text:
            pieces.append(chunk.choices[0].text)
        if len(pieces) == 3:
            break
    first.close()  # the client goes away mid-stream
    assert len(pieces) == 3, f"the stream ended after {pieces}: nothing to break off"

    second = client.completions.create(
        model=MODEL, prompt="the moon", max_tokens=8, temperature=0, stream=True,
        logit_bias=NO_BYTES,
    )  # fmt: skip
    text = "".join(c.choices[0].text for c in second if c.choices)
    assert text.strip(), "the second request got no text"
    wait_for(lambda: FINISHED.search(since_start()) is not None, "the engine's report")

    output = since_start()
    finished = [int(runs) for runs in FINISHED.findall(output)]
    # one generation ran to its end, the second's (8 tokens); the first never did
    assert len(finished) == 1 and finished[0] <= 8, finished
    assert DROPPED in output.split("llama_perf_context_print")[0], output[-3000:]

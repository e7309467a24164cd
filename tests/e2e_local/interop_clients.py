"""Clients no one here wrote, run as they ship: Triton's example clients, and ``kaip serve``.

Triton's examples are vendored from triton-inference-server/client at a pinned commit
(``tests/contract/vendor/triton_client``, BSD-3, see its README): :func:`run_example` checks a
script is byte-for-byte as fetched, runs it as a subprocess with ``-u HOST:PORT`` and
:func:`assert_passed` checks that it exited 0 and printed what it prints on success (some exit 0
even when they fail). :func:`serve` runs ``kaip serve`` for one Model on a free port.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "tests" / "contract" / "vendor" / "triton_client"
EXAMPLES = ROOT / "examples"
KAIP = Path(sys.executable).with_name("kaip")
LAST_LINE = {
    "simple_http_infer_client.py": "[404] Request for unknown model: 'wrong_model_name' is not "
    "found",
    "simple_http_async_infer_client.py": "15 - 1 = 14",
    "simple_http_aio_infer_client.py": "PASS: infer",
    "simple_http_string_infer_client.py": "PASS: string",
}
SCRIPTS = sorted(LAST_LINE)


def run_example(script: str, address: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """Run one vendored client against ``address`` (``host:port``), unmodified."""
    digests = {}
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        digests[name] = digest
    path = VENDOR / script
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digests[script], f"{script} changed"
    return subprocess.run(
        [sys.executable, str(path), "-u", address, *flags],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def assert_passed(script: str, done: subprocess.CompletedProcess[str]) -> None:
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, output
    assert "error" not in done.stdout.replace("Request for unknown model", "").lower(), output
    # (kaip serve adds "; this server serves ..." to the last line of the first one)
    assert done.stdout.strip().splitlines()[-1].startswith(LAST_LINE[script]), output


@contextmanager
def serve(spec: Path, model: str, workdir: Path) -> Iterator[str]:
    """``kaip serve SPEC --model MODEL --port 0``; yields ``127.0.0.1:PORT`` once it is ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(KAIP), "serve", str(spec), "--model", model, "--port", "0"],
            stdout=subprocess.PIPE, stderr=out,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # {"event": "ready", ...}, or nothing if it exited
        assert line, log.read_text()
        yield f"127.0.0.1:{json.loads(line)['port']}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

"""Start the real model server as a subprocess on a free loopback port, and stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
KAIP = Path(sys.executable).with_name("kaip")


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout(self) -> str:
        return (self.workdir / "stdout.log").read_text()

    @property
    def stderr(self) -> str:
        return (self.workdir / "stderr.log").read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


def start_server(
    spec: Path,
    model: str,
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    cli: bool = False,
    revision: str = "1",
    timeout: float = 60,
) -> RunningServer:
    """Start ``kaip serve`` (cli=True) or ``python -m kaip.serving`` and wait until ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    port_file = workdir / "port"
    port_file.unlink(missing_ok=True)
    command = [str(KAIP), "serve"] if cli else [sys.executable, "-m", "kaip.serving"]
    argv = [*command, str(spec), "--model", model, "--port", "0", "--revision", revision,
            "--port-file", str(port_file)]  # fmt: skip
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KAIP_"))}
    full_env.update(env or {})
    with (workdir / "stdout.log").open("wb") as out, (workdir / "stderr.log").open("wb") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=full_env)
    deadline = time.monotonic() + timeout
    while not port_file.exists():
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}: {(workdir / 'stderr.log').read_text()}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("server did not become ready in time")
        time.sleep(0.05)
    server = RunningServer(process, int(port_file.read_text()), workdir)
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    return server


def write_spec(directory: Path, name: str, artifact: str, **serve: object) -> Path:
    """A one-Model spec for a Python-class test model, with ``serve`` fields in camelCase."""
    lines = [
        "apiVersion: kaip.dev/v1alpha1",
        "kind: Model",
        "metadata:",
        f"  name: {name}",
        "spec:",
        "  owner: tests",
        "  artifact:",
        f"    {artifact}",
        "  serve:",
        *(f"    {key}: {value}" for key, value in serve.items()),
    ]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "kaip.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def counting_spec(directory: Path, **serve: object) -> Path:
    uri = (HERE / "models" / "counting.py").as_uri()
    artifact = f"uri: {uri}\n    format: python\n    entrypoint: counting:Counting\n    trust: true"
    serve.setdefault("protocols", "[oip-v2]")
    return write_spec(directory, "counting", artifact, **serve)

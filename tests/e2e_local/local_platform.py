"""A real ``kaip up`` process tree for end-to-end tests, and a steady load through its gateway.

:class:`LocalPlatform` runs ``python -m kaip.cli up`` in a temporary working directory (so its
``.kaip/`` is private) with fast policy ticks, and drives it through the real CLI. Its status,
which the tests poll while they wait, is read from the control API the CLI reads it from
(``GET /api/v1/status``, what ``kaip status -o json`` prints): a CLI run costs ~0.6 s of CPU,
so polling through it kept a core busy while a test waited. :class:`Load` sends inference
requests at a steady pace from a background thread and counts every outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from kaip.local.supervisor import kill_orphans

FIXTURES = Path(__file__).parent / "fixtures"
FAST_ENV = {
    "KAIP_LOCAL__TICK_SECONDS": "0.2",
    "KAIP_LOCAL__HEALTH_INTERVAL_SECONDS": "0.5",
    "KAIP_LOCAL__STABILIZATION_SECONDS": "1",
    "KAIP_LOCAL__DRAIN_SECONDS": "5",
    "KAIP_SERVING__GRACEFUL_SHUTDOWN_SECONDS": "3",
    "COLUMNS": "200",
}
STEPS = (
    "[{weight: 10, pauseSeconds: 1}, {weight: 50, pauseSeconds: 1}, {weight: 100, pauseSeconds: 1}]"
)
INFER_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def model_spec(
    name: str = "echo",
    entrypoint: str = "model:Healthy",
    *,
    min_replicas: int = 1,
    max_replicas: int = 1,
    scale_to_zero_after: float = 300,
    steps: str = STEPS,
    min_requests: int = 10,
    strategy: str = "canary",
    timeout_seconds: float = 30,
    max_cost_ratio: float | None = None,
) -> str:
    cost = "" if max_cost_ratio is None else f", maxCostRatio: {max_cost_ratio}"
    return f"""\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {{name: {name}}}
spec:
  owner: e2e
  artifact: {{uri: model.py, format: python, entrypoint: "{entrypoint}", trust: true}}
  serve: {{batching: {{maxBatchSize: 1, maxDelayMs: 0}}, timeoutSeconds: {timeout_seconds}}}
  scaling:
    minReplicas: {min_replicas}
    maxReplicas: {max_replicas}
    targetConcurrency: 50
    scaleToZeroAfterSeconds: {scale_to_zero_after}
  rollout:
    strategy: {strategy}
    steps: {steps}
    gates: {{maxErrorRate: 0.05, minRequests: {min_requests}{cost}}}
"""


def wait_for(condition: Callable[[], bool], what: str, limit: float = 90.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {limit:.0f}s waiting for {what}")
        time.sleep(0.1)


@contextlib.contextmanager
def https_server(
    handler: type[BaseHTTPRequestHandler], directory: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """``handler`` served over HTTPS on loopback under a throwaway CA that ``kaip up`` and its
    replicas trust (``SSL_CERT_FILE``; their artifact cache in ``directory``); yields the base
    URL, ``https://127.0.0.1:PORT``."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(directory / "ca.pem"))
    monkeypatch.setenv("KAIP_SERVING__ARTIFACT_CACHE_DIR", str(directory / "artifacts"))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass
class LocalPlatform:
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    admin_url: str = ""

    @property
    def spec_dir(self) -> Path:
        return self.workdir / "spec"

    @property
    def log(self) -> Path:
        return self.workdir / "kaip-up.out"

    def write_spec(self, text: str, file: str = "kaip.yaml") -> Path:
        self.spec_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / "models" / "model.py", self.spec_dir / "model.py")
        path = self.spec_dir / file
        path.write_text(text, encoding="utf-8")
        return path

    def env(self) -> dict[str, str]:
        return {**os.environ, **FAST_ENV}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kaip.cli", *args],
            cwd=self.workdir, env=self.env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def up(self, *paths: Path, umask: int = -1, args: tuple[str, ...] = ()) -> None:
        argv = [*map(str, paths), "--port", "0", "--admin-port", "0", *args]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kaip.cli", "up", *argv],
                cwd=self.workdir, env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, umask=umask,
            )  # fmt: skip
        run_file = self.workdir / ".kaip" / "run.json"
        try:  # a kaip up that never gets ready is stopped here, with its replicas
            wait_for(lambda: self._exited() or run_file.exists(), "kaip up to write run.json")
            assert not self._exited(), self.log.read_text()
            record = json.loads(run_file.read_text())
            self.url, self.admin_url = record["url"], record["admin_url"]
            wait_for(lambda: self._exited() or self.status().get("ready") is True, "kaip up ready")
            assert not self._exited(), self.log.read_text()
        except BaseException:
            self.down()
            raise

    @property
    def token(self) -> str:
        return (self.workdir / ".kaip" / "admin.token").read_text().strip()

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the control API as the CLI does: with this run's admin token."""
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return httpx.request(
            method, f"{self.admin_url}{path}", headers=headers, timeout=60, trust_env=False,
            **kwargs,
        )  # fmt: skip

    def _exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def status(self) -> dict[str, Any]:
        """What ``kaip status -o json`` prints, read as it reads it; {} when kaip up does not
        answer."""
        try:
            answer = self.admin("GET", "/api/v1/status")
        except (httpx.HTTPError, OSError):  # not (or no longer) up, or no token yet
            return {}
        return dict(answer.json()) if answer.status_code == 200 else {}

    def resource(self, name: str) -> dict[str, Any]:
        for resource in self.status().get("resources", []):
            if resource["name"] == name:
                return dict(resource)
        raise AssertionError(f"{name} is not in kaip status")

    def rollouts(self, name: str) -> list[dict[str, Any]]:
        return list(self.admin("GET", f"/_kaip/rollouts/{name}").json()["history"])

    def down(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        kill_orphans(self.workdir / ".kaip" / "replicas.json")  # whatever a dead kaip left
        self.process = None


@dataclass
class Load:
    """Steady inference requests from ``workers`` threads; every outcome is counted."""

    url: str
    workers: int = 3
    pause: float = 0.02
    body: dict[str, Any] = field(default_factory=lambda: INFER_BODY)
    ok: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for _ in range(self.workers):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self) -> None:
        with httpx.Client(timeout=30, trust_env=False) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(self.url, json=self.body)
                    good, why = (
                        response.status_code == 200,
                        f"{response.status_code} {response.text[:200]}",
                    )
                except httpx.HTTPError as exc:
                    good, why = False, repr(exc)
                with self._lock:
                    if good:
                        self.ok += 1
                    else:
                        self.failed += 1
                        self.failures.append(why)
                time.sleep(self.pause)

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.ok, self.failed

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        return self.counts()

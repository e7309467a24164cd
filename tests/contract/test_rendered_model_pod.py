"""The containers ``kaip render`` writes for a Model really run: the init container's command
fills the artifact cache from a real HTTP server, and the server container's command, with the
rendered ConfigMap spec and environment, starts from that cache alone and passes its probes.

Pod paths (``/etc/kaip``, ``/var/lib/kaip/artifacts``) are mapped into a temporary directory and
the listen address onto loopback; everything else is taken from the rendered objects as is.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from kaip.plan import build_plan
from kaip.render.kube import ARTIFACT_DIR, render_manifests
from kaip.settings import Settings
from kaip.spec import load_text


@pytest.fixture
def artifact_server(tmp_path: Path) -> Iterator[tuple[str, str, http.server.HTTPServer]]:
    """A loopback HTTP server holding a small sklearn model; yields (url, sha256, server)."""
    root = tmp_path / "remote"
    root.mkdir()
    model = LogisticRegression().fit([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]], [0, 1, 0, 1])
    joblib.dump(model, root / "model.joblib")
    digest = hashlib.sha256((root / "model.joblib").read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/model.joblib", digest, server
    server.shutdown()
    server.server_close()


def _local(value: str, mapping: dict[str, str]) -> str:
    """``value`` with a leading pod path replaced by its local stand-in (once)."""
    for pod_path, local in mapping.items():
        if value == pod_path or value.startswith(pod_path + "/"):
            return local + value[len(pod_path) :]
    return value


def _run_args(container: dict[str, Any], mapping: dict[str, str]) -> list[str]:
    argv = [*container["command"], *container.get("args", [])]
    return [sys.executable if arg == "python" else _local(arg, mapping) for arg in argv]


def _env(container: dict[str, Any], mapping: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAIP_", "OTEL_"))}
    for item in container.get("env", []):
        env[item["name"]] = _local(item["value"], mapping)
    return env


def _replace_flag(argv: list[str], flag: str, value: str) -> list[str]:
    index = argv.index(flag)
    return [*argv[: index + 1], value, *argv[index + 2 :]]


def test_init_container_fills_the_cache_and_the_server_starts_from_it(
    tmp_path: Path, artifact_server: tuple[str, str, http.server.HTTPServer]
) -> None:
    url, digest, http_server = artifact_server
    spec = f"""\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {{name: digits}}
spec:
  owner: ml-platform
  artifact: {{uri: "{url}", format: sklearn, sha256: {digest}}}
"""
    objects = render_manifests(build_plan(load_text(spec).documents, Settings()))
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    (server,) = pod["containers"]

    spec_dir, cache, home = tmp_path / "etc-kaip", tmp_path / "artifacts", tmp_path / "home"
    for directory in (spec_dir, cache, home):
        directory.mkdir()
    (spec_dir / "spec.yaml").write_text(config["data"]["spec.yaml"])
    mapping = {"/etc/kaip": str(spec_dir), ARTIFACT_DIR: str(cache), "/tmp": str(home)}

    fetched = subprocess.run(
        _run_args(fetch, mapping), env=_env(fetch, mapping), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    assert [p.name for p in cache.rglob("*") if p.is_file()] == ["model.joblib"]

    http_server.shutdown()  # from here on the artifact exists only in the cache
    port_file = tmp_path / "port"
    argv = _replace_flag(_run_args(server, mapping), "--host", "127.0.0.1")
    argv = [*_replace_flag(argv, "--port", "0"), "--port-file", str(port_file)]
    process = subprocess.Popen(
        argv, env=_env(server, mapping), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port_file.read_text().strip()}"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            path = server[probe]["httpGet"]["path"]
            assert httpx.get(base + path, timeout=10).status_code == 200, probe
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)

"""Pod-level fields under ``kaip up``: what a cluster provides is found here or said missing.

A variable the spec takes from a Secret on Kubernetes (``envValueFrom``) comes from ``kaip
up``'s own environment, which replicas inherit: missing, ``kaip up`` refuses before starting
anything and names the field; exported, the App sees it. Volumes and ``envFrom`` cannot be
honoured locally, and ``kaip up`` says so instead of running without them in silence.
"""

from __future__ import annotations

import httpx
import pytest
from local_platform import LocalPlatform

pytestmark = pytest.mark.slow

ENV_SERVER = """\
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({k: os.environ.get(k) for k in ("TOKEN", "LITERAL", "FLAGS")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

SPEC = """\
apiVersion: kaip.dev/v1alpha1
kind: App
metadata: {name: web}
spec:
  owner: e2e
  command: [python, env_server.py]
  env: {LITERAL: from-the-spec}
  envValueFrom:
    TOKEN: {secretKeyRef: {name: api, key: token}}
    FLAGS: {configMapKeyRef: {name: flags, key: all, optional: true}}
  envFrom:
    - secretRef: {name: everything}
  volumes:
    - {name: tls, mountPath: /etc/tls, secret: {secretName: web-tls}}
"""


def _write(platform: LocalPlatform) -> None:
    path = platform.write_spec(SPEC)
    (path.parent / "env_server.py").write_text(ENV_SERVER, encoding="utf-8")


def test_a_secret_reference_missing_here_stops_kaip_up_and_names_the_field(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOKEN", raising=False)
    _write(platform)
    result = platform.cli("up", str(platform.spec_dir), "--port", "0")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "kaip.yaml:1:1: spec.envValueFrom.TOKEN:" in result.stderr
    assert "Secret 'api', key 'token'" in result.stderr
    assert "export TOKEN=" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (platform.workdir / ".kaip" / "run.json").exists(), "nothing started"


def test_an_exported_variable_reaches_the_app_and_what_cannot_apply_is_said(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN", "s3cret")
    monkeypatch.delenv("FLAGS", raising=False)
    _write(platform)
    platform.up(platform.spec_dir)
    answer = httpx.get(f"{platform.url}/apps/web/", timeout=10, trust_env=False)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"TOKEN": "s3cret", "LITERAL": "from-the-spec", "FLAGS": None}
    log = platform.log.read_text()
    assert "FLAGS (optional, from ConfigMap 'flags', key 'all' on Kubernetes) is not set" in log
    assert "spec.envFrom[0] (Secret 'everything') is read on Kubernetes only" in log
    assert "volume 'tls' (secret) is mounted at /etc/tls on Kubernetes only" in log

"""`kaip operator` fails fast, with one clear message, when it cannot reach or use a cluster."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path


def kaip_operator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaip.cli", "operator", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_unreachable_cluster_is_one_message_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    done = kaip_operator("--kubeconfig", str(kubeconfig))
    assert done.returncode == 1
    assert "cannot reach the Kubernetes API server" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    done = kaip_operator("--kubeconfig", str(tmp_path / "nope"))
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr

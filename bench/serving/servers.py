"""The servers under test: how each one is launched on the shared artifact, and in which format
it is asked.

Each Launch is plain data (argv, cwd, env, ports); process.Server runs it. A server whose
environment is missing is reported as unavailable with the reason, never silently dropped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from artifact import Artifact
from process import free_port
from protocol import BENTOML, MODEL_NAME, OIP, RAY, Protocol

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PEERS = HERE / "peers"
VENVS = REPO / "bench" / ".venvs"
MAIN_VENV = REPO / ".venv"


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    port: int
    cwd: Path = REPO
    env: dict[str, str] = field(default_factory=dict)
    temp_dirs: list[Path] = field(default_factory=list)  # removed once the server is stopped


@dataclass(frozen=True)
class ServerDef:
    name: str
    protocol: Protocol
    describe: str
    launch: Callable[[Artifact, Path], Launch]  # (artifact, scratch dir) -> Launch
    venv: Path
    startup_timeout_s: float = 120.0

    def unavailable(self) -> str | None:
        """Why this server cannot run here, or None."""
        if not (self.venv / "bin" / "python").exists():
            log = self.venv.with_suffix(".pip.log")
            hint = f" (install log: {log})" if log.exists() else ""
            return f"no virtualenv at {self.venv}{hint}; run bench/serving/setup.sh"
        if self.venv != MAIN_VENV and not (self.venv / ".requirements.sha256").exists():
            return f"the install into {self.venv} did not finish; see {self.venv}.pip.log"
        return None


def _mlserver(artifact: Artifact, scratch: Path) -> Launch:
    port = free_port()
    root = scratch / "mlserver"
    (root / MODEL_NAME).mkdir(parents=True, exist_ok=True)
    settings = {
        "debug": False,  # production mode: no per-request access log
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        # 0 = inference in the server process itself (MLServer's single-process mode); on one
        # core it served more req/s than the default 1 worker (IPC to a second process).
        # BENCH_MLSERVER_WORKERS=1 measures the default instead.
        "parallel_workers": int(os.environ.get("BENCH_MLSERVER_WORKERS", "0")),
        "model_repository_root": str(root),
        "metrics_dir": str(root / ".metrics"),
        "environments_dir": str(root / ".envs"),
    }
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(artifact.path), "version": "v1"},
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    (root / MODEL_NAME / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return Launch(argv=[str(VENVS / "mlserver/bin/mlserver"), "start", str(root)], port=port)


def _bentoml(artifact: Artifact, scratch: Path) -> Launch:
    port = free_port()
    argv = [
        str(VENVS / "bentoml/bin/bentoml"), "serve", "service:Digits",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    env = {"BENCH_MODEL": str(artifact.path), "BENTOML_HOME": str(scratch / "bentoml-home")}
    return Launch(argv=argv, port=port, cwd=PEERS / "bentoml", env=env)


def _kserve(artifact: Artifact, scratch: Path) -> Launch:
    port = free_port()
    argv = [
        str(VENVS / "kserve/bin/python"), str(PEERS / "kserve/server.py"),
        "--model_path", str(artifact.path), "--http_port", str(port),
        "--grpc_port", str(free_port()),
    ]  # fmt: skip
    return Launch(argv=argv, port=port)


def _ray(artifact: Artifact, scratch: Path) -> Launch:
    port = free_port()
    config = scratch / "ray-serve.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "proxy_location": "HeadOnly",
                "http_options": {"host": "127.0.0.1", "port": port},
                "applications": [
                    {
                        "name": MODEL_NAME,
                        "route_prefix": "/",
                        "import_path": "app:build",
                        "args": {"model_path": str(artifact.path)},
                    }
                ],
            },
            indent=2,
        )
    )
    # Ray's unix socket paths must stay short: its temp dir goes under /tmp, not the scratch dir
    temp_dir = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    argv = [
        "bash", str(PEERS / "ray/run.sh"), str(VENVS / "ray"), str(free_port()), str(config),
        temp_dir,
    ]  # fmt: skip
    env = {
        "PYTHONPATH": str(PEERS / "ray"),
        "RAY_SERVE_DEFAULT_HTTP_HOST": "127.0.0.1",
        # Ray Serve's documented high-throughput mode (it served more req/s here than without)
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    }
    return Launch(argv=argv, port=port, cwd=PEERS / "ray", env=env, temp_dirs=[temp_dir])


def _limit(artifact: Artifact, scratch: Path) -> Launch:
    port = free_port()
    argv = [
        str(MAIN_VENV / "bin/python"), str(PEERS / "limit/server.py"),
        str(artifact.path), "--port", str(port),
    ]  # fmt: skip
    return Launch(argv=argv, port=port)


def _kaip(artifact: Artifact, scratch: Path) -> Launch:
    port = free_port()
    spec = scratch / "kaip" / "kaip.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifact.path, spec.parent / "model.joblib")  # same bytes, same sha256
    spec.write_text(
        "apiVersion: kaip.dev/v1alpha1\n"
        "kind: Model\n"
        "metadata:\n"
        f"  name: {MODEL_NAME}\n"
        "spec:\n"
        "  owner: bench\n"
        "  artifact:\n"
        "    uri: model.joblib\n"
        "    format: sklearn\n"
        f"    sha256: {artifact.sha256}\n"
    )
    argv = [
        str(MAIN_VENV / "bin/kaip"), "serve", str(spec), "--model", MODEL_NAME,
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    return Launch(argv=argv, port=port, env={"KAIP_SERVING__COMPILE_LINEAR": "true"})


def _kaip_predict(artifact: Artifact, scratch: Path) -> Launch:
    """kaip with its compiled linear path off: every request calls model.predict, as the peers
    do, so the table separates what the server does from what the fast path does."""
    launch = _kaip(artifact, scratch)
    return Launch(argv=launch.argv, port=launch.port, env={"KAIP_SERVING__COMPILE_LINEAR": "false"})


SERVING_PATH = {"kaip": "compiled", "kaip-predict": "predict"}
"""Which path kaip's own log must say served the model, per row: a row that ran the other path
is reported as failed, so the two kaip rows can never be mixed up."""


def serving_path(log: str) -> str | None:
    """'compiled' or 'predict', from the sklearn runtime's load line in kaip's log."""
    for line in log.splitlines():
        if "sklearn:" in line and "compiled to numpy for" in line:
            return "predict" if "no dtype (kept predict)" in line else "compiled"
        if "sklearn:" in line and "served by its own predict" in line:
            return "predict"
    return None


def kaip_serve_available() -> str | None:
    kaip = MAIN_VENV / "bin/kaip"
    if not kaip.exists():
        return f"{kaip} is missing; run make venv"
    done = subprocess.run([str(kaip), "serve", "--help"], capture_output=True, text=True)
    if done.returncode != 0:
        return "this checkout's kaip has no `serve` command yet"
    return None


ALL = [
    ServerDef(
        "kaip", OIP, "kaip serve (this checkout), compiled linear path", _kaip, MAIN_VENV, 60
    ),
    ServerDef(
        "kaip-predict",
        OIP,
        "kaip serve, KAIP_SERVING__COMPILE_LINEAR=false: model.predict",
        _kaip_predict,
        MAIN_VENV,
        60,
    ),
    ServerDef("mlserver", OIP, "MLServer 1.7.1 + mlserver-sklearn", _mlserver, VENVS / "mlserver"),
    ServerDef("kserve", OIP, "KServe 0.21 kserve.Model", _kserve, VENVS / "kserve"),
    ServerDef("bentoml", BENTOML, "BentoML 1.4 @bentoml.service", _bentoml, VENVS / "bentoml"),
    ServerDef("ray", RAY, "Ray Serve 2.60 serve run", _ray, VENVS / "ray", 180),
    ServerDef("limit", OIP, "raw ASGI + micro-batcher (reference)", _limit, MAIN_VENV, 60),
]

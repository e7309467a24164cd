"""How each kind of resource runs as a local process, and the spec snapshot it runs from.

A Model replica is ``python -m kaip.serving SNAPSHOT --model NAME --port {port}`` where SNAPSHOT
is the revision's spec written under ``.kaip/revisions/`` with artifact paths made absolute, so
replicas of an old revision keep working whatever happens to the spec file afterwards. An App
replica is its ``command`` (a leading ``python`` means this interpreter) run in the spec file's
directory. Both get the spec's ``env`` (over kaip's own environment, which they inherit: that is
where ``envValueFrom`` variables come from locally), ``PORT`` and ``KAIP_GATEWAY_URL``; a Model
replica behind a tracing gateway also ``KAIP_TRACE_ROOTS=off`` (it starts no trace). A Model
with ``serve.engine`` is given its engine's ``startupSeconds`` to turn ready. Writes snapshot
files; starts nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from kaip.local.private import private_dir, write_private
from kaip.local.supervisor.process import Launch
from kaip.spec import App, Model, dump_resource
from kaip.telemetry.spans import TRACE_ROOTS_ENV

MODEL_HEALTH_PATH = "/v2/health/ready"
ENGINE_MARGIN_S = 30.0
"""A Model with ``serve.engine`` may take its engine's ``startupSeconds`` to turn ready, plus
this for the replica's own start (the replica itself fails past that, saying why)."""


def snapshot_path(snapshot_dir: Path, kind: str, name: str, revision: str) -> Path:
    return snapshot_dir / f"{kind.lower()}-{name}-{revision}.yaml"


def write_snapshot(
    snapshot_dir: Path,
    model: Model,
    base_dir: Path,
    revision: str,
    artifact_uri: str | None = None,
) -> Path:
    """Write the model's spec with an absolute artifact path; return the file (idempotent).

    ``artifact_uri`` replaces the spec's (a registry version resolved to its stored file).
    """
    data = dump_resource(model)
    uri = model.spec.artifact.uri
    if artifact_uri is not None:
        data["spec"]["artifact"]["uri"] = artifact_uri
    elif "://" not in uri:
        data["spec"]["artifact"]["uri"] = str((base_dir / uri).resolve())
    path = snapshot_path(snapshot_dir, "Model", model.metadata.name, revision)
    private_dir(snapshot_dir)
    text = yaml.safe_dump(data, sort_keys=False)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_private(path, text)
    return path


def model_launch(
    model: Model,
    revision: str,
    snapshot: Path,
    base_dir: Path,
    gateway_url: str,
    profile_token: str = "",
    *,
    traced_by_gateway: bool = False,
) -> Launch:
    name = model.metadata.name
    engine = model.spec.serve.engine
    argv = (
        sys.executable,
        "-m",
        "kaip.serving",
        str(snapshot),
        "--model",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--revision",
        revision,
    )
    return Launch(
        name=name,
        revision=revision,
        argv=argv,
        cwd=base_dir.resolve(),
        env={
            **model.spec.env,
            "KAIP_GATEWAY_URL": gateway_url,
            **({"KAIP_PROFILE_TOKEN": profile_token} if profile_token else {}),
            # The tracing gateway decides for every request: the replica starts no trace.
            **({TRACE_ROOTS_ENV: "off"} if traced_by_gateway else {}),
        },
        health_path=MODEL_HEALTH_PATH,
        startup_timeout=None if engine is None else engine.startup_seconds + ENGINE_MARGIN_S,
    )


def app_launch(app: App, revision: str, base_dir: Path, gateway_url: str) -> Launch:
    command = list(app.spec.command or ())
    if command and command[0] == "python":
        command[0] = sys.executable
    return Launch(
        name=app.metadata.name,
        revision=revision,
        argv=tuple(command),
        cwd=base_dir.resolve(),
        env={**app.spec.env, "KAIP_GATEWAY_URL": gateway_url},
        health_path=app.spec.health_path,
    )

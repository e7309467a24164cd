"""A real MLflow tracking server (``mlflow server`` from PyPI) on a free loopback port, for the
``models:/`` tests: a SQLite backend store under the test's directory, and its artifact store
on the S3-compatible server (moto, :mod:`object_store`), proxied by the tracking server
(``--artifacts-destination``): clients log and download artifacts through MLflow, and the bytes
land in the bucket. Stopped (its whole process group) by the context manager that started it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from object_store import REGION, S3Server, _stop, _wait_http, free_port

BUCKET = "mlflow-artifacts"


@dataclass
class MlflowServer:
    url: str
    s3: S3Server
    bucket: str = BUCKET


@contextmanager
def mlflow_server(workdir: Path, s3: S3Server) -> Iterator[MlflowServer]:
    s3.client().create_bucket(Bucket=BUCKET)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "mlflow.log"
    env = {
        **os.environ,
        "MLFLOW_S3_ENDPOINT_URL": s3.url,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_DEFAULT_REGION": REGION,
        # MLflow 3's job runner (huey consumers for its GenAI jobs, which kaip never submits):
        # about ten more processes that cost ~10 CPU-s to start and ~40 % of a core while idle
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    argv = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination", f"s3://{BUCKET}/",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/health", process, log, 300)
        yield MlflowServer(url, s3)
    finally:
        _stop(process)

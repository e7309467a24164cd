"""A real S3-compatible server (moto in server mode) for the ``s3://`` tests: a separate
process on a free loopback port, stopped by the fixture that started it.

The S3 server enforces credentials: moto lets the first three requests through unauthenticated
(creating an IAM user, its policy and its access key), then checks every request's signature,
so a wrong key is refused as AWS would refuse it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url} exited while starting:\n{log.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=2, trust_env=False)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {limit:.0f}s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's whole process group (its workers too), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class S3Server:
    url: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        """What a client process needs to reach this server, the standard AWS way."""
        return {
            "AWS_ENDPOINT_URL_S3": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
        )


@contextmanager
def s3_server(workdir: Path, host: str = "127.0.0.1") -> Iterator[S3Server]:
    """moto on ``host`` (loopback; the real-node tier gives the host's end of the node's link,
    which pods reach)."""
    import boto3

    port = free_port()
    log = workdir / "moto.log"
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://{host}:{port}"
    try:
        _wait_http(f"{url}/moto-api/", process, log, 120)
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="kaip")
        allow = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
        policy = {"Version": "2012-10-17", "Statement": [allow]}
        iam.put_user_policy(UserName="kaip", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="kaip")["AccessKey"]
        yield S3Server(url, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        _stop(process)

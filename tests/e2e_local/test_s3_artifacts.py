"""``s3://`` artifacts against a real S3-compatible server (moto) on loopback.

The init container's command (``python -m kaip.serving.fetch``) and ``kaip serve`` fetch the
quickstart's model from the server with the standard AWS settings, verify its sha256 and serve
it; a missing object, a missing bucket, refused credentials and a wrong digest each end in one
message that names the object and what to check, with the right exit code.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from object_store import S3Server, s3_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # real trainings on a shared box

EXAMPLES = Path(__file__).parents[2] / "examples"
DIGIT = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4,
         12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10,
         12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]  # fmt: skip


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="module")
def uploaded(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The quickstart's model trained here and put at s3://models/digits/model.joblib."""
    model = tmp_path_factory.mktemp("model") / "model.joblib"
    trained = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart" / "train.py"), str(model)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    client = s3.client()
    client.create_bucket(Bucket="models")
    client.upload_file(str(model), "models", "digits/model.joblib")
    return hashlib.sha256(model.read_bytes()).hexdigest()


def spec(tmp_path: Path, uri: str, sha256: str) -> Path:
    path = tmp_path / "kaip.yaml"
    path.write_text(
        f"""\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {{name: digits}}
spec:
  owner: e2e
  artifact: {{uri: "{uri}", format: sklearn, sha256: {sha256}}}
""",
        encoding="utf-8",
    )
    return path


def fetch(
    tmp_path: Path, env: dict[str, str], uri: str, sha256: str
) -> subprocess.CompletedProcess[str]:
    """The init container's command, with only the AWS settings in ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", "kaip.serving.fetch", str(spec(tmp_path, uri, sha256)),
         "--model", "digits"],
        env={**base, **env, "KAIP_SERVING__ARTIFACT_CACHE_DIR": str(tmp_path / "cache")},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_init_container_fetch_and_kaip_serve_read_a_verified_s3_artifact(
    s3: S3Server, uploaded: str, tmp_path: Path
) -> None:
    uri = "s3://models/digits/model.joblib"
    fetched = fetch(tmp_path, s3.env(), uri, uploaded)
    assert fetched.returncode == 0, fetched.stderr
    cached = tmp_path / "cache" / uploaded / "model.joblib"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == uploaded

    port_file = tmp_path / "port"
    env = {**os.environ, **s3.env(), "KAIP_SERVING__ARTIFACT_CACHE_DIR": str(tmp_path / "c2")}
    server = subprocess.Popen(
        [sys.executable, "-m", "kaip.cli", "serve", str(tmp_path / "kaip.yaml"), "--model",
         "digits", "--port", "0", "--port-file", str(port_file)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not port_file.exists() or not port_file.read_text().strip():
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "kaip serve did not start"
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port_file.read_text().strip()}/v2/models/digits/infer"
        body = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": DIGIT}]}
        answer = httpx.post(url, json=body, timeout=30, trust_env=False)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == [0]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize(
    ("uri", "credentials", "digest", "code", "message"),
    [
        ("s3://models/digits/missing.joblib", "good", "right", 1,
         "cannot read s3://models/digits/missing.joblib: no such object (404); check the bucket"
         " and key"),
        ("s3://nobucket/model.joblib", "good", "right", 1,
         "cannot read s3://nobucket/model.joblib: no such object (404)"),
        ("s3://models/digits/model.joblib", "wrong", "right", 1,
         "cannot read s3://models/digits/model.joblib: the server refused the credentials (403"),
        ("s3://models/digits/model.joblib", "none", "right", 1,
         "no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        ("s3://models/digits/model.joblib", "good", "wrong", 2,
         "s3://models/digits/model.joblib has sha256 "),
    ],
)  # fmt: skip
def test_s3_failures_say_which_object_and_what_to_check(
    s3: S3Server,
    uploaded: str,
    tmp_path: Path,
    uri: str,
    credentials: str,
    digest: str,
    code: int,
    message: str,
) -> None:
    env = s3.env()
    if credentials == "wrong":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    elif credentials == "none":
        env = {
            "AWS_ENDPOINT_URL_S3": s3.url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    sha256 = uploaded if digest == "right" else "ab" * 32
    result = fetch(tmp_path, env, uri, sha256)
    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "cache").rglob("*.joblib"))  # nothing half-fetched is kept
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr

"""A TrainingJob whose output is an ``s3://`` object, through the CLI only (issue 16 #5).

The job is told ``KAIP_OUTPUT_URI=s3://...`` and uploads its artifact itself (boto3, the standard
AWS environment); ``kaip train`` then downloads that object once, hashed and bounded, and
registers the copy. Against a real S3-compatible server (moto in server mode, credentials
checked): version 1 holds the bytes the first job uploaded; a second run overwriting the same key
registers version 2 without changing version 1; a run that uploads nothing fails, naming the
object. Every check reads what the CLI prints (``kaip models versions -o json``, exit codes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_platform import LocalPlatform
from object_store import S3Server, s3_server

pytest.importorskip("boto3", reason="optional extra kaip[s3] is not installed")

BUCKET = "runs"
UPLOAD = """\
import os

import boto3

from urllib.parse import urlparse

where = urlparse(os.environ["KAIP_OUTPUT_URI"])
body = os.environ["BODY"].encode()
print("KAIP_METRIC accuracy 0.97")
if body:
    boto3.client("s3").put_object(Bucket=where.netloc, Key=where.path.lstrip("/"), Body=body)
"""
JOB = """\
apiVersion: kaip.dev/v1alpha1
kind: TrainingJob
metadata: {{name: {name}}}
spec:
  owner: e2e
  command: [python, upload.py]
  env: {{BODY: "{body}"}}
  maxRetries: 0
  output: {{uri: "s3://{bucket}/out/model.bin", format: sklearn, model: shipped}}
"""


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


def train(platform: LocalPlatform, name: str, body: str) -> Any:
    platform.spec_dir.mkdir(parents=True, exist_ok=True)
    (platform.spec_dir / "upload.py").write_text(UPLOAD, encoding="utf-8")
    spec = platform.spec_dir / f"{name}.yaml"
    spec.write_text(JOB.format(name=name, body=body, bucket=BUCKET), encoding="utf-8")
    return platform.cli("train", str(spec))


def test_an_s3_output_is_downloaded_verified_and_registered_once_per_run(
    s3: S3Server, platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable, value in s3.env().items():  # kaip train and the job it runs read these
        monkeypatch.setenv(variable, value)

    first = train(platform, "ship-1", "weights one")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "registered shipped version 1" in first.stdout
    second = train(platform, "ship-2", "weights two")  # the same key, overwritten
    assert second.returncode == 0, second.stdout + second.stderr

    listed = platform.cli("models", "versions", "shipped", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    versions = {v["version"]: v for v in json.loads(listed.stdout)}
    assert versions[1]["sha256"] == hashlib.sha256(b"weights one").hexdigest()
    assert versions[2]["sha256"] == hashlib.sha256(b"weights two").hexdigest()
    assert (versions[1]["job"], versions[2]["job"]) == ("ship-1", "ship-2")
    assert versions[2]["metrics"] == {"accuracy": 0.97}
    # What version 1 serves is kaip's own copy, not the key the second run overwrote.
    stored = Path(versions[1]["storage"].removeprefix("file://"))
    assert stored.read_bytes() == b"weights one"

    s3.client().delete_object(Bucket=BUCKET, Key="out/model.bin")
    missing = train(platform, "ship-3", "")
    assert missing.returncode != 0, missing.stdout
    said = missing.stdout + missing.stderr
    assert f"s3://{BUCKET}/out/model.bin" in said and "no such object" in said, said
    assert "Traceback" not in said

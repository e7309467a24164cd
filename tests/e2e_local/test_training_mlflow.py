"""MLflow as kaip's model registry, against a real MLflow tracking server whose artifacts live on
the S3-compatible server (moto): both started from PyPI on loopback (:mod:`mlflow_server`).

The backend on its own: kaip registers a run's output (an MLflow run with its metrics,
parameters and the artifact, and a model version tagged with its sha256), reads it back as
``models:/NAME/VERSION`` and ``models:/NAME@ALIAS``, reads a version registered by MLflow's own
client (no kaip tags: the digest comes from a download), and refuses bytes that changed in the
bucket. Then the must-show loop through the CLI only, with ``KAIP_REGISTRY__BACKEND=mlflow``: a
TrainingJob registers version 2 in MLflow, the Model reading ``models:/digits@latest`` rolls it
out as a canary under traffic and promotes it; a version below the quality gate is registered
but never serves; the bytes of every version are in the bucket.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_platform import Load, LocalPlatform, wait_for
from mlflow_server import MlflowServer, mlflow_server
from object_store import s3_server
from test_training import DIGIT_BODY, cli_json, finished, job, run_of, write
from test_training import MODEL as TRAINED_MODEL

from kaip.errors import RegistryError
from kaip.registry import Registration
from kaip.registry.mlflow_backend import MlflowRegistry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

EXAMPLES = Path(__file__).parents[2] / "examples"
MODEL = TRAINED_MODEL.replace("registry://digits@latest", "models:/digits@latest")


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with (
        s3_server(tmp_path_factory.mktemp("s3")) as s3,
        mlflow_server(tmp_path_factory.mktemp("mlflow"), s3) as server,
    ):
        yield server


@pytest.fixture(autouse=True)
def proxied_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads through the tracking server, not from presigned S3 URLs: moto's server mode,
    enforcing credentials, fails on a presigned GET (KeyError HTTP_AUTHORIZATION), and MLflow 3
    advertises presigned downloads for every S3 artifact store. MLflow's own switch, read by the
    client at each download (the kaip processes inherit it)."""
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")


def bucket_digests(server: MlflowServer) -> dict[str, str]:
    """sha256 -> key of every object in the MLflow server's artifact bucket."""
    client = server.s3.client()
    found: dict[str, str] = {}
    for item in client.list_objects_v2(Bucket=server.bucket).get("Contents", []):
        body = client.get_object(Bucket=server.bucket, Key=item["Key"])["Body"].read()
        found[hashlib.sha256(body).hexdigest()] = item["Key"]
    return found


def test_the_backend_registers_reads_aliases_and_refuses_changed_bytes(
    mlflow: MlflowServer, tmp_path: Path
) -> None:
    registry = MlflowRegistry.open(mlflow.url)
    artifact = tmp_path / "weights.bin"
    artifact.write_bytes(b"version one")
    one = registry.register(
        Registration(
            name="backend", path=artifact, format="sklearn", metrics={"accuracy": 0.97},
            params={"C": "1.0"}, source_commit="abc123", job="train-backend", run_id=7,
        )
    )  # fmt: skip
    assert (one.reference, one.digest) == (
        "models:/backend/1",
        hashlib.sha256(b"version one").hexdigest(),
    )
    assert (one.metrics, one.params, one.job, one.run_id, one.source_commit) == (
        {"accuracy": 0.97}, {"C": "1.0"}, "train-backend", 7, "abc123",
    )  # fmt: skip
    assert one.digest in bucket_digests(mlflow), "the bytes are on the S3 server"
    artifact.write_bytes(b"version two")
    two = registry.register(Registration(name="backend", path=artifact, format="sklearn"))
    registry.set_alias("backend", "champion", 1)
    assert registry.resolve("backend", "latest").version == 2
    assert registry.resolve("backend", "1").digest == one.digest
    champion = registry.resolve("backend", "champion")
    assert (champion.version, champion.aliases) == (1, ("champion",))
    cache = tmp_path / "cache"
    assert registry.local_path(two, cache).read_bytes() == b"version two"

    # A version MLflow's own client registered: no kaip tags, so kaip hashes a download.
    import mlflow as mlflow_client

    client = mlflow_client.MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url)
    experiment = client.create_experiment("outside")
    run = client.create_run(experiment)
    artifact.write_bytes(b"made elsewhere")
    client.log_artifact(run.info.run_id, str(artifact), "model")
    client.create_registered_model("outside")
    client.create_model_version(
        "outside", f"{run.info.artifact_uri}/model/weights.bin", run_id=run.info.run_id
    )
    outside = registry.resolve("outside", "1")
    assert outside.digest == hashlib.sha256(b"made elsewhere").hexdigest()
    assert outside.reference == "models:/outside/1"

    # Bytes changed in the bucket after registration are refused, never served.
    key = bucket_digests(mlflow)[one.digest]
    mlflow.s3.client().put_object(Bucket=mlflow.bucket, Key=key, Body=b"tampered")
    with pytest.raises(RegistryError, match="refusing them"):
        registry.local_path(one, tmp_path / "other-cache")
    with pytest.raises(RegistryError, match=f"MLflow at {mlflow.url}.*nope"):
        registry.resolve("nope", "1")
    with pytest.raises(RegistryError, match="no version of model 'nope'"):
        registry.resolve("nope", "latest")


def test_the_local_loop_with_mlflow_as_the_registry_and_artifacts_on_s3(
    mlflow: MlflowServer, platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIP_REGISTRY__BACKEND", "mlflow")
    monkeypatch.setenv("KAIP_REGISTRY__MLFLOW_URI", mlflow.url)
    platform.spec_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "quickstart" / "train.py", platform.spec_dir / "train.py")
    first = platform.cli("train", str(write(platform, "v1.yaml", job("digits-c1", "1.0"))))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "registered digits version 1" in first.stdout
    platform.up(write(platform, "model.yaml", MODEL))
    v1 = platform.resource("digits")
    assert v1["source"][v1["stable"]]["version"] == "models:/digits/1"

    load = Load(f"{platform.url}/v2/models/digits/infer", body=DIGIT_BODY).start()
    try:
        deployed = platform.cli("deploy", str(write(platform, "v2.yaml", job("digits-c01", "0.1"))))
        assert deployed.returncode == 0, deployed.stderr
        wait_for(lambda: finished(platform, "digits-c01"), "the digits-c01 run to finish", 600)
        assert run_of(platform, "digits-c01")["version"] == "digits@2"

        def promoted() -> bool:
            resource = platform.resource("digits")
            source = resource["source"].get(resource["stable"]) or {}
            return resource["canary"] is None and source.get("version") == "models:/digits/2"

        wait_for(promoted, "version 2 to be promoted", 600)
        history = platform.rollouts("digits")
        assert history[0]["status"] == "promoted", history[0]
        assert [v["weight"] for v in history[0]["verdicts"]][:2] == [10, 50], history[0]

        stable = platform.resource("digits")["stable"]

        def stable_alone() -> bool:
            return {r["revision"] for r in platform.resource("digits")["replicas"]} == {stable}

        # version 1's replica drains (KAIP_LOCAL__DRAIN_SECONDS) before it stops: on a quiet
        # machine the refusal of version 3 comes sooner, and the check below would see it
        wait_for(stable_alone, "version 1's replica to drain and stop")
        bad = platform.cli("deploy", str(write(platform, "v3.yaml", job("digits-bad", "0.001"))))
        assert bad.returncode == 0, bad.stderr
        wait_for(lambda: finished(platform, "digits-bad"), "the digits-bad run to finish", 600)
        assert run_of(platform, "digits-bad")["version"] == "digits@3"

        def refused() -> list[dict[str, Any]]:
            events = platform.admin("GET", "/_kaip/events").json()["events"]
            return [
                e for e in events
                if e["outcome"] == "refused" and e["artifact_version"] == "models:/digits/3"
            ]  # fmt: skip

        wait_for(lambda: bool(refused()), "the refusal of version 3", 600)
        load.stop()
        resource = platform.resource("digits")
        assert (resource["stable"], resource["canary"]) == (stable, None)
        assert {r["revision"] for r in resource["replicas"]} == {stable}
        ok, failed = load.counts()
        assert failed == 0 and ok > 0, load.failures[:5]
    finally:
        load.stop()

    versions = cli_json(platform, "models", "versions", "digits")
    assert [(v["version"], v["uri"], v["job"], v["params"]) for v in versions] == [
        (1, "models:/digits/1", "digits-c1", {"C": "1.0"}),
        (2, "models:/digits/2", "digits-c01", {"C": "0.1"}),
        (3, "models:/digits/3", "digits-bad", {"C": "0.001"}),
    ]
    in_bucket = bucket_digests(mlflow)
    assert all(v["sha256"] in in_bucket for v in versions), (versions, in_bucket)
    [two] = cli_json(platform, "lineage", "digits@2")
    assert two["job"] == "digits-c01" and two["revisions"][0]["stable_now"]
    # The tracking server's own view, read with MLflow's own client.
    out = subprocess.run(
        [sys.executable, "-c", (
            "import json, mlflow, sys; c = mlflow.MlflowClient(sys.argv[1]); "
            "v = c.get_model_version('digits', '2'); r = c.get_run(v.run_id); "
            "print(json.dumps([v.tags, r.data.metrics, r.data.tags.get('kaip.job')]))"
        ), mlflow.url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    tags, metrics, made_by = json.loads(out.stdout)
    assert tags["kaip.sha256"] == versions[1]["sha256"] and made_by == "digits-c01"
    assert metrics["accuracy"] >= 0.95

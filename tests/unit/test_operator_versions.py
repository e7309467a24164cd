"""What the operator refuses before it asks any registry: kaip's embedded registry on a cluster,
a training output a pod cannot share, a registry the operator was not given -- each a
ConfigError naming the resource, the field and what to set; and the lineage a revision shows."""

from __future__ import annotations

import pytest

from kaip.errors import ConfigError
from kaip.kube.operator.versions import ClusterVersions, lineage
from kaip.registry import ModelVersion
from kaip.settings import RegistrySettings, Settings
from kaip.spec import Model, TrainingJob

META = {"apiVersion": "kaip.dev/v1alpha1", "metadata": {"name": "digits", "namespace": "ml"}}


def model(uri: str) -> Model:
    artifact = {"uri": uri, "format": "sklearn", "trust": True}
    return Model.model_validate(
        {**META, "kind": "Model", "spec": {"owner": "ml", "artifact": artifact}}
    )


def job(uri: str) -> TrainingJob:
    output = {"uri": uri, "format": "sklearn", "model": "digits"}
    spec = {"owner": "ml", "command": ["python", "train.py"], "output": output}
    return TrainingJob.model_validate({**META, "kind": "TrainingJob", "spec": spec})


def test_a_model_naming_the_embedded_registry_is_refused_on_a_cluster() -> None:
    versions = ClusterVersions(Settings(registry=RegistrySettings(backend="mlflow")))
    with pytest.raises(ConfigError, match=r"registry://digits@latest names kaip's embedded") as e:
        versions.pin(model("registry://digits@latest"), None, changed=True)
    assert "models:/NAME@latest" in e.value.message


def test_a_models_uri_without_a_registry_says_what_to_set() -> None:
    versions = ClusterVersions(Settings())
    with pytest.raises(ConfigError, match="KAIP_REGISTRY__BACKEND=mlflow"):
        versions.pin(model("models:/digits@latest"), None, changed=True)
    plain = model("s3://bucket/digits.joblib")
    assert versions.pin(plain, None, changed=True) is plain, "other URIs need no registry"
    assert versions.fetchable(plain) is plain


def test_a_training_output_on_a_cluster_must_be_in_object_storage() -> None:
    versions = ClusterVersions(Settings(registry=RegistrySettings(backend="mlflow")))
    with pytest.raises(ConfigError, match=r"output.uri is 'out/m.joblib'.*s3://BUCKET/KEY"):
        versions.register_output(job("out/m.joblib"), "train-abc")
    with pytest.raises(ConfigError, match="needs a model registry on the cluster"):
        ClusterVersions(Settings()).register_output(job("s3://b/m.joblib"), "train-abc")


def test_lineage_names_the_job_the_run_the_version_and_its_digest() -> None:
    version = ModelVersion(
        name="digits", version=2, digest="ab" * 32, format="sklearn", size=3,
        storage_uri="s3://b/m.joblib", created_at=0.0, job="train", run_name="train-abc",
        registry="mlflow",
    )  # fmt: skip
    assert lineage(version) == {
        "job": "train", "run": "train-abc", "version": "models:/digits/2", "digest": "ab" * 32,
    }  # fmt: skip


def test_each_versions_bytes_are_kept_at_a_key_named_by_their_digest_beside_the_output() -> None:
    from kaip.registry.outputs import versioned_uri

    digest = "cd" * 32
    assert versioned_uri("s3://b/digits/model.joblib", digest) == (
        f"s3://b/digits/kaip-versions/sha256-{digest}/model.joblib"
    )
    assert versioned_uri("s3://b/m.onnx", digest) == f"s3://b/kaip-versions/sha256-{digest}/m.onnx"

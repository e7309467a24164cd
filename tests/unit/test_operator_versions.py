"""What the operator refuses before it asks any registry: kaip's embedded registry on a cluster,
a training output a pod cannot share, a registry the operator was not given -- each a
ConfigError naming the resource, the field and what to set; the lineage a revision shows; and
which version a Model is pinned to: the newest, the stable one under ``promotion: manual`` until
the spec changes, never one below the quality gate."""

from __future__ import annotations

import pytest

from kaip.errors import ConfigError, RegistryError
from kaip.kube.operator.versions import ClusterVersions, lineage
from kaip.registry import ModelVersion, Registration
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
    assert versions.pin(plain, None, changed=True).model is plain, "other URIs need no registry"
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


class Versions:
    """Registered versions in memory, behind :class:`ClusterRegistry` (the operator's
    boundary with MLflow; the real one is exercised by tests/e2e_kube/test_training_kueue.py)."""

    def __init__(self) -> None:
        self.known: list[ModelVersion] = []
        self.asked = 0

    def add(self, metrics: dict[str, float] | None = None, where: str = "s3://b/k") -> None:
        number = len(self.known) + 1
        self.known.append(
            ModelVersion(
                name="digits", version=number, digest=f"{number:064x}", format="sklearn",
                size=1, storage_uri=f"{where}/{number}", created_at=0.0, metrics=metrics or {},
                job="train", run_name=f"train-{number}", registry="mlflow",
            )
        )  # fmt: skip

    def resolve(self, name: str, selector: str) -> ModelVersion:
        self.asked += 1
        if selector == "latest":
            return self.known[-1]
        return self.known[int(selector) - 1]

    def register(self, registration: Registration) -> ModelVersion:
        raise AssertionError("not asked here")

    def registered_by(self, name: str, run_name: str) -> ModelVersion | None:
        raise AssertionError("not asked here")


def gated(uri: str, **spec: object) -> Model:
    body = model(uri).model_dump(by_alias=True, exclude_none=True)
    body["spec"].update(spec)
    return Model.model_validate(body)


def following(registry: Versions, now: list[float]) -> ClusterVersions:
    settings = Settings(registry=RegistrySettings(backend="mlflow"))
    return ClusterVersions(settings, clock=lambda: now[0], _registry=registry)


def test_latest_is_pinned_to_the_newest_version_and_the_registry_asked_once_a_second() -> None:
    registry, now = Versions(), [100.0]
    registry.add()
    versions = following(registry, now)
    first = versions.pin(model("models:/digits@latest"), None, changed=True).model
    assert (first.spec.artifact.uri, first.spec.artifact.sha256) == (
        "models:/digits/1",
        f"{1:064x}",
    )
    registry.add()
    again = versions.pin(model("models:/digits@latest"), None, changed=False).model
    assert again.spec.artifact.uri == "models:/digits/1", "asked again only a second later"
    now[0] += 1.0
    assert versions.pin(model("models:/digits@latest"), None, False).model.spec.artifact.uri == (
        "models:/digits/2"
    )
    pods = versions.fetchable(again)
    assert (pods.spec.artifact.uri, pods.spec.artifact.sha256) == ("s3://b/k/1", f"{1:064x}")


def test_manual_promotion_keeps_the_stable_version_until_the_spec_changes() -> None:
    registry, now = Versions(), [0.0]
    registry.add()
    registry.add()
    versions = following(registry, now)
    manual = gated("models:/digits@latest", promotion="manual")
    stable = {"artifact": {"uri": "models:/digits/1", "format": "sklearn"}}
    assert versions.pin(manual, stable, changed=False).model.spec.artifact.uri == "models:/digits/1"
    assert versions.pin(manual, stable, changed=True).model.spec.artifact.uri == "models:/digits/2"
    auto = model("models:/digits@latest")
    assert versions.pin(auto, stable, changed=False).model.spec.artifact.uri == "models:/digits/2"


def test_a_version_below_the_quality_gate_is_never_pinned() -> None:
    registry, now = Versions(), [0.0]
    registry.add({"accuracy": 0.97})
    registry.add({"accuracy": 0.5})
    versions = following(registry, now)
    model_ = gated("models:/digits@latest", qualityGate={"minMetric": {"accuracy": 0.9}})
    stable = {"artifact": {"uri": "models:/digits/1", "format": "sklearn"}}
    kept = versions.pin(model_, stable, changed=False)
    assert kept.model.spec.artifact.uri == "models:/digits/1"
    refused = {"version": "models:/digits/2", "reason": "accuracy 0.5 < 0.9 (minMetric)"}
    assert kept.refused == refused, "the Model says which version it refused, and why"
    with pytest.raises(RegistryError, match=r"refused by the quality gate \(accuracy 0.5 < 0.9"):
        versions.pin(model_, None, changed=True)
    registry.add({"accuracy": 0.95})
    now[0] += 1.0
    newer = versions.pin(model_, stable, changed=False)
    assert (newer.model.spec.artifact.uri, newer.refused) == ("models:/digits/3", None)


def test_a_version_a_pod_cannot_fetch_is_refused_with_what_to_register() -> None:
    registry, now = Versions(), [0.0]
    registry.add(where="mlflow-artifacts:/1/abc/artifacts")
    versions = following(registry, now)
    pinned = versions.pin(model("models:/digits@latest"), None, changed=True).model
    with pytest.raises(ConfigError, match="a pod cannot fetch: register versions whose source"):
        versions.fetchable(pinned)

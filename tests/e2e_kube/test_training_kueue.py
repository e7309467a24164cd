"""TrainingJobs on the test control plane, queued by the real Kueue.

Kueue's controller manager (built from the Go module proxy by ``tools/kueue/build.sh``, its CRDs
from the same module) runs against the control plane with a ResourceFlavor, a ClusterQueue and a
LocalQueue. A real ``kaip operator`` (``KAIP_KUBE__KUEUE_QUEUE`` set) creates the TrainingJob's
Job suspended and labelled for the queue; while the ClusterQueue has no CPU quota Kueue keeps
the Job's Workload pending and the Job suspended; once quota is given Kueue admits the Workload
and unsuspends the Job, which kwok runs to completion, and the TrainingJob reports it.

Then the operator registers the Job's output as a version and the Model that follows it rolls
it out, with lineage. The operator is configured with a real MLflow tracking server on loopback
as its registry (``KAIP_REGISTRY__BACKEND=mlflow``) and a real S3-compatible server (moto) as
the object store, both started from PyPI as the local MLflow tests start them. kwok runs no
containers, so the test puts into the bucket the object the job would have written at its
``output.uri`` (``KAIP_OUTPUT_URI``) before Kueue admits the Job. Once the Job succeeds the
TrainingJob's ``status.output`` names the version (``models:/digits/1``, its sha256 and the
Job that made it), MLflow holds that version (source: a copy of the object the operator keeps
at a content-addressed key, tagged with its sha256), and
the Model reading ``models:/digits@latest`` -- created before any version existed, so it waited
-- runs a revision pinned to it, whose ``status.revisions[].source`` is its lineage. A second
run of the job (its spec changed: a new Job) writes the same key and registers version 2, which
the Model takes as a new revision through its canary beside the stable one, whose bytes are
still there, unchanged.

The quality gate on the cluster: each job's pod reports its metrics as its termination message
(``kaip.training`` writes them to ``KAIP_REPORT_FILE``; kwok, which runs no container, finishes
the pod with the message its ``KWOK_TERMINATION_MESSAGE`` variable holds, kwok-stages.yaml). The
operator registers them with the version, and a Model with ``qualityGate: {minMetric: {accuracy:
0.95}}`` serves only a version that meets it: a first version below it is registered and never
served (the Model says why), one above it rolls out, and a later one below it or with no report
is refused while the stable one keeps serving (``status.refused``, an Event VersionRefused).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_harness import ControlPlane
from kueue_harness import (
    Kueue,
    admitted,
    apply_kaip_crds,
    job_succeeded,
    queues,
    start_kueue,
    stop,
    until,
    without_quota,
)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e_local"))  # the MLflow and S3 servers' helpers
from mlflow_server import MlflowServer, mlflow_server  # noqa: E402
from object_store import s3_server  # noqa: E402

BUCKET = "training-outputs"
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def kaip_crds(kube_cluster: ControlPlane) -> None:
    apply_kaip_crds(kube_cluster)


@pytest.fixture(scope="module")
def kueue(
    kube_cluster: ControlPlane, kaip_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kueue]:
    with start_kueue(kube_cluster, tmp_path_factory.mktemp("kueue")) as running:
        yield running


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with (
        s3_server(tmp_path_factory.mktemp("s3")) as s3,
        mlflow_server(tmp_path_factory.mktemp("mlflow"), s3) as server,
    ):
        s3.client().create_bucket(Bucket=BUCKET)
        yield server


TRAINING = """\
apiVersion: kaip.dev/v1alpha1
kind: TrainingJob
metadata: {{name: train}}
spec:
  owner: ml
  image: ghcr.io/example/train:1
  command: [python, train.py]
  env: {{C: "{c}"}}
  resources: {{cpu: "1", memory: 128Mi}}
  output: {{uri: "s3://{bucket}/digits/model.joblib", format: sklearn, model: digits}}
"""
MODEL = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: digits}
spec:
  owner: ml
  artifact: {uri: "models:/digits@latest", format: sklearn, trust: true}
  resources: {cpu: 100m, memory: 128Mi}
  scaling: {minReplicas: 1, maxReplicas: 1}
  rollout:
    steps: [{weight: 20, pauseSeconds: 600}, {weight: 100}]
    gates: {maxErrorRate: 0.05, minRequests: 10}
"""


def start_operator(
    plane: ControlPlane, ns: str, mlflow: MlflowServer, log: Path, **env: str
) -> subprocess.Popen[bytes]:
    """A real ``kaip operator`` for namespace ``ns``, MLflow its registry, moto its S3."""
    environment = {
        **os.environ,
        **mlflow.s3.env(),  # the operator's S3 credentials, the standard AWS way
        "KAIP_REGISTRY__BACKEND": "mlflow",
        "KAIP_REGISTRY__MLFLOW_URI": mlflow.url,
        **env,
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "kaip.cli", "operator", "--kubeconfig", str(plane.kubeconfig),
             "--namespace", ns, "--interval", "1", "--prometheus-url", "http://127.0.0.1:9"],
            cwd=REPO, env=environment, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def test_the_job_waits_without_quota_then_registers_its_version_which_the_model_rolls_out(
    kube_cluster: ControlPlane,
    cluster_namespace: str,
    kueue: Kueue,
    mlflow: MlflowServer,
    tmp_path: Path,
) -> None:
    plane, ns = kube_cluster, cluster_namespace
    (tmp_path / "queues.yaml").write_text(queues(ns, cpu=0))
    plane.kubectl("apply", "-f", str(tmp_path / "queues.yaml"))
    operator = start_operator(
        plane, ns, mlflow, tmp_path / "operator.log", KAIP_KUBE__KUEUE_QUEUE="team"
    )

    def tail() -> str:
        logs = (tmp_path / "operator.log").read_text(errors="replace")[-3000:]
        return f"operator:\n{logs}\nkueue:\n{kueue.tail()}"

    def get(kind: str, name: str) -> dict[str, Any]:
        out = plane.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
        return json.loads(out) if out.strip().startswith("{") else {}

    def items(kind: str) -> list[dict[str, Any]]:
        return list(json.loads(plane.kubectl("get", kind, "-n", ns, "-o", "json"))["items"])

    def apply(name: str, text: str) -> None:
        (tmp_path / name).write_text(text)
        plane.kubectl("apply", "-n", ns, "-f", str(tmp_path / name))

    def job_wrote(body: bytes) -> str:
        """What the job would have written at its output.uri (kwok runs no containers)."""
        mlflow.s3.client().put_object(Bucket=BUCKET, Key="digits/model.joblib", Body=body)
        return hashlib.sha256(body).hexdigest()

    def registered(number: int) -> dict[str, Any]:
        status = get("trainingjob", "train").get("status") or {}
        output = status.get("output") or {}
        return output if output.get("version") == f"models:/digits/{number}" else {}

    def revisions() -> list[dict[str, Any]]:
        return list((get("model", "digits").get("status") or {}).get("revisions") or [])

    try:
        # The Model comes first: no version of digits exists yet, so it waits for one.
        apply("model.yaml", MODEL)
        apply("train.yaml", TRAINING.format(c="1.0", bucket=BUCKET))
        [job] = until(lambda: items("jobs"), "the operator to create the Job", tail)
        name = job["metadata"]["name"]
        assert job["spec"]["suspend"] is True
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team"
        until(lambda: items("workloads.kueue.x-k8s.io"), "Kueue to make the Job's Workload", tail)
        # No CPU quota: Kueue has looked at the Workload and keeps it pending, the Job suspended.
        pending = until(
            lambda: [w for w in items("workloads.kueue.x-k8s.io") if without_quota(w)],
            "Kueue to say the Workload has no quota", tail,
        )  # fmt: skip
        assert not admitted(pending[0]), pending[0].get("status")
        assert get("job", name)["spec"]["suspend"] is True
        assert not [p for p in items("pods") if "job-name" in p["metadata"].get("labels", {})], (
            "no pod of the Job runs while it is suspended"
        )
        assert not revisions(), "the Model has no version to serve yet"

        digest = job_wrote(b"digits, C=1.0")
        (tmp_path / "queues.yaml").write_text(queues(ns, cpu=4))
        plane.kubectl("apply", "-f", str(tmp_path / "queues.yaml"))
        until(lambda: get("job", name)["spec"].get("suspend") is False,
              "Kueue to admit and unsuspend the Job", tail)  # fmt: skip
        assert admitted(items("workloads.kueue.x-k8s.io")[0])
        done = until(
            lambda: (t := get("trainingjob", "train")) and job_succeeded(t) and t,
            "the TrainingJob to report its Job succeeded", tail,
        )  # fmt: skip
        assert done["metadata"]["name"] == "train"
        assert get("job", name)["metadata"]["uid"] == job["metadata"]["uid"], "the same Job ran"

        # The operator registered the output in MLflow and says so in the TrainingJob.
        output = until(lambda: registered(1), "the operator to register version 1", tail)
        lineage = {"job": "train", "run": name, "version": "models:/digits/1", "digest": digest}
        assert {k: output[k] for k in lineage} == lineage, output
        assert output["uri"] == f"s3://{BUCKET}/digits/model.joblib"
        import mlflow as mlflow_client

        client = mlflow_client.MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url)
        one = client.get_model_version("digits", "1")
        kept = f"s3://{BUCKET}/digits/kaip-versions/sha256-{digest}/model.joblib"
        assert (one.source, one.tags["kaip.sha256"]) == (kept, digest)
        assert client.get_run(one.run_id).data.tags["kaip.job"] == "train"

        # The Model, waiting for a version, now runs one revision of version 1, with lineage.
        [first] = until(
            lambda: [r for r in revisions() if r.get("source")], "the Model to serve v1", tail
        )
        assert (first["source"], first["weight"]) == (lineage, 100)
        [deployment] = [d for d in items("deployments") if d["metadata"]["name"].startswith(
            "digits-")]  # fmt: skip
        spec_config = json.dumps(items("configmaps"))
        assert kept in spec_config, "pods fetch the version's own copy"
        assert digest in spec_config, "and verify its sha256"

        # A second run (the spec changed: a new Job) registers version 2: a canary of it starts.
        digest2 = job_wrote(b"digits, C=2.0")
        apply("train.yaml", TRAINING.format(c="2.0", bucket=BUCKET))
        output2 = until(lambda: registered(2), "the operator to register version 2", tail)
        assert output2["digest"] == digest2 and output2["run"] != name
        live = until(
            lambda: len(rs := revisions()) == 2 and rs, "the Model to start a canary of v2", tail
        )
        by_version = {r["source"]["version"]: r for r in live}
        assert by_version["models:/digits/1"]["source"] == lineage
        canary = by_version["models:/digits/2"]
        assert canary["source"] == {
            "job": "train", "run": output2["run"], "version": "models:/digits/2",
            "digest": digest2,
        }  # fmt: skip
        body = mlflow.s3.client().get_object(Bucket=BUCKET, Key=kept.split("/", 3)[3])["Body"]
        assert body.read() == b"digits, C=1.0", "version 1's bytes outlive the key's rewrite"
        rollout = get("model", "digits")["status"]["rollout"]
        assert rollout["canary"]["revision"] == canary["name"]
        assert rollout["stable"]["revision"] == by_version["models:/digits/1"]["name"]
        assert deployment["metadata"]["name"] in {
            d["metadata"]["name"] for d in items("deployments")
        }, "the stable revision keeps running beside the canary"
    finally:
        stop(operator)
        plane.kubectl("delete", "clusterqueue", f"cq-{ns}", "--wait=false", check=False)


GATED_MODEL = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: gated}
spec:
  owner: ml
  artifact: {uri: "models:/gated@latest", format: sklearn, trust: true}
  qualityGate: {minMetric: {accuracy: 0.95}}
  resources: {cpu: 100m, memory: 128Mi}
  scaling: {minReplicas: 1, maxReplicas: 1}
  rollout:
    steps: [{weight: 20, pauseSeconds: 600}, {weight: 100}]
    gates: {maxErrorRate: 0.05, minRequests: 10}
"""
GATED_TRAINING = """\
apiVersion: kaip.dev/v1alpha1
kind: TrainingJob
metadata: {{name: train-gated}}
spec:
  owner: ml
  image: ghcr.io/example/train:1
  command: [python, train.py]
  env: {{RUN: "{run}"{report}}}
  resources: {{cpu: "1", memory: 128Mi}}
  output: {{uri: "s3://{bucket}/gated/model.joblib", format: sklearn, model: gated}}
"""


def test_the_quality_gate_judges_the_metrics_each_jobs_pod_reported(
    kube_cluster: ControlPlane,
    cluster_namespace: str,
    kaip_crds: None,
    mlflow: MlflowServer,
    tmp_path: Path,
) -> None:
    plane, ns = kube_cluster, cluster_namespace
    operator = start_operator(plane, ns, mlflow, tmp_path / "operator.log")

    def tail() -> str:
        return (tmp_path / "operator.log").read_text(errors="replace")[-3000:]

    def get(kind: str, name: str) -> dict[str, Any]:
        out = plane.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
        return json.loads(out) if out.strip().startswith("{") else {}

    def model_status() -> dict[str, Any]:
        return dict(get("model", "gated").get("status") or {})

    def served() -> list[str]:
        return [r["source"]["version"] for r in model_status().get("revisions") or []
                if r.get("source")]  # fmt: skip

    def run(number: int, report: str) -> dict[str, Any]:
        """Run the job once more (its spec changed: a new Job) reporting ``report``; the
        status.output of the version it registered."""
        body = f"gated model, run {number}".encode()
        mlflow.s3.client().put_object(Bucket=BUCKET, Key="gated/model.joblib", Body=body)
        (tmp_path / "train.yaml").write_text(
            GATED_TRAINING.format(run=number, report=report, bucket=BUCKET)
        )
        plane.kubectl("apply", "-n", ns, "-f", str(tmp_path / "train.yaml"))
        wanted = f"models:/gated/{number}"
        return dict(
            until(
                lambda: (o := (get("trainingjob", "train-gated").get("status") or {}).get(
                    "output") or {}).get("version") == wanted and o,
                f"the operator to register {wanted}", tail,
            )
        )  # fmt: skip

    def reported(accuracy: float) -> str:
        said = json.dumps({"metrics": {"accuracy": accuracy}, "params": {"C": "1.0"}})
        return f", KWOK_TERMINATION_MESSAGE: '{said}'"

    import mlflow as mlflow_client

    client = mlflow_client.MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url)
    try:
        (tmp_path / "model.yaml").write_text(GATED_MODEL)
        plane.kubectl("apply", "-n", ns, "-f", str(tmp_path / "model.yaml"))

        # Below the gate, and no version serves yet: registered, never served, and it says why.
        first = run(1, reported(0.8))
        assert first["metrics"] == {"accuracy": 0.8} and "problem" not in first, first
        one = client.get_model_version("gated", "1")
        assert client.get_run(one.run_id).data.metrics == {"accuracy": 0.8}
        assert client.get_run(one.run_id).data.params == {"C": "1.0"}
        why = until(
            lambda: [c["message"] for c in model_status().get("conditions") or []
                     if c["type"] == "Ready" and "quality gate" in c.get("message", "")],
            "the Model to say why it serves nothing", tail,
        )  # fmt: skip
        assert "gated version 1" in why[0] and "accuracy 0.8 < 0.95 (minMetric)" in why[0], why
        assert served() == []

        # Above the gate: the Model rolls it out (its first version: all of the traffic).
        second = run(2, reported(0.97))
        assert second["metrics"] == {"accuracy": 0.97}
        until(lambda: served() == ["models:/gated/2"], "the Model to serve version 2", tail)
        [revision] = model_status()["revisions"]
        assert revision["weight"] == 100 and revision["source"]["digest"] == second["digest"]
        assert "refused" not in model_status()

        # Below the gate again: registered, refused, version 2 keeps serving, and it says why.
        run(3, reported(0.5))
        refused = until(lambda: model_status().get("refused"), "the Model to refuse v3", tail)
        assert refused == {
            "version": "models:/gated/3", "reason": "accuracy 0.5 < 0.95 (minMetric)"
        }  # fmt: skip
        events = until(
            lambda: json.loads(plane.kubectl(
                "get", "events", "-n", ns, "--field-selector", "reason=VersionRefused",
                "-o", "json",
            ))["items"],
            "an Event VersionRefused", tail,
        )  # fmt: skip
        assert [e["involvedObject"]["name"] for e in events] == ["gated"]
        assert "accuracy 0.5 < 0.95" in events[0]["message"] and events[0]["type"] == "Warning"

        # No report at all (the job only printed its metrics): registered without metrics,
        # saying what is missing, and refused: no evidence is not good evidence.
        fourth = run(4, "")
        assert fourth["metrics"] == {}
        assert "termination message, the job's report: it is empty" in fourth["problem"]
        assert "report them with kaip.training.metric" in fourth["problem"]
        refused = until(
            lambda: (r := model_status().get("refused") or {}).get("version") == "models:/gated/4"
            and r, "the Model to refuse v4", tail,
        )  # fmt: skip
        assert refused["reason"] == "the run reported no metric 'accuracy' (minMetric)"
        assert served() == ["models:/gated/2"], "the stable version still serves"
    finally:
        stop(operator)

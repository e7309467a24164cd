"""A TrainingJob on the real node: queued by the real Kueue, run by a real pod, registered.

The kwok version of this flow is ``tests/e2e_kube/test_training_kueue.py``: there no container
runs, so that test writes the job's output and its report itself. Here the same operator
(``kaip operator`` on the host, watching one namespace of the node's cluster, with
``KAIP_KUBE__KUEUE_QUEUE``) renders the TrainingJob's ``batch/v1`` Job suspended, the real Kueue
(tools/kueue/build.sh, :mod:`kueue_harness`) keeps it so while its ClusterQueue has no CPU quota
and admits it once quota is given, and the Job's pod runs on ``real-0`` (containerd, runc) in
kaip's model-server image, the one image the tier builds that holds kaip and scikit-learn, as
the operator renders it: non-root, read-only root filesystem, in a namespace enforcing the
restricted Pod Security profile. The trainer (a few lines given as ``python -c``: the image
holds no script of ours) fits the digits classifier, reports its accuracy and ``C`` with
``kaip.training.metric``/``param`` -- which write them to ``KAIP_REPORT_FILE``, the
container's termination message -- and uploads the model to its ``output.uri`` on a real
S3-compatible server (moto, on the host's end of the node's link, which pods reach) with the
credentials of a Secret. When the Job succeeds the operator registers the object in a real
MLflow server as ``models:/digits/1`` with the metrics the kubelet copied into the pod's status,
and the Model that follows ``models:/digits@latest`` gets a revision whose
``status.revisions[].source`` is the lineage.
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
import yaml
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
from node_harness import NODE_NAME, REPO_ROOT, RealCluster

sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e_local"))  # the MLflow and S3 servers' helpers
from mlflow_server import MlflowServer, mlflow_server
from object_store import s3_server

BUCKET = "training-outputs"
pytestmark = pytest.mark.timeout(1200)

TRAINER = """\
import os
import boto3, joblib
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from kaip import training

c = float(os.environ["C"])
x, y = load_digits(return_X_y=True)
model = LogisticRegression(C=c, max_iter=300).fit(x[:1400], y[:1400])
training.param("C", c)
training.metric("accuracy", model.score(x[1400:], y[1400:]))
joblib.dump(model, "/tmp/model.joblib")
bucket, key = os.environ["KAIP_OUTPUT_URI"].removeprefix("s3://").split("/", 1)
boto3.client("s3").upload_file("/tmp/model.joblib", bucket, key)
print("uploaded", flush=True)
"""


@pytest.fixture(scope="module")
def kueue(real_cluster: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kueue]:
    apply_kaip_crds(real_cluster.plane)
    with start_kueue(real_cluster.plane, tmp_path_factory.mktemp("kueue")) as running:
        yield running


@pytest.fixture(scope="module")
def mlflow(
    real_cluster: RealCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    with (
        s3_server(tmp_path_factory.mktemp("s3"), host=real_cluster.node.host_ip) as s3,
        mlflow_server(tmp_path_factory.mktemp("mlflow"), s3) as server,
    ):
        s3.client().create_bucket(Bucket=BUCKET)
        yield server


def test_a_job_kueue_admits_runs_on_the_node_reports_its_metrics_and_registers_its_version(
    real_cluster: RealCluster,
    node_namespace: str,
    kueue: Kueue,
    mlflow: MlflowServer,
    tmp_path: Path,
) -> None:
    cluster, ns = real_cluster, node_namespace
    image = cluster.images["server"]

    def kubectl(*args: str, check: bool = True) -> str:
        return cluster.kubectl("-n", ns, *args, check=check)

    def apply(docs: list[dict[str, Any]]) -> None:
        path = tmp_path / f"apply-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        kubectl("apply", "-f", str(path))

    def get(kind: str, name: str) -> dict[str, Any]:
        out = kubectl("get", kind, name, "-o", "json", check=False)
        return json.loads(out) if out.strip().startswith("{") else {}

    def items(kind: str) -> list[dict[str, Any]]:
        return list(json.loads(kubectl("get", kind, "-o", "json"))["items"])

    def tail() -> str:
        log = (tmp_path / "operator.log").read_text(errors="replace")[-3000:]
        pods = kubectl("get", "pods", "-o", "wide", check=False)
        events = kubectl("get", "events", "--sort-by=.lastTimestamp", check=False)[-3000:]
        return f"operator:\n{log}\nkueue:\n{kueue.tail()}\npods:\n{pods}\nevents:\n{events}"

    def job_pods() -> list[dict[str, Any]]:
        return [p for p in items("pods") if "job-name" in p["metadata"].get("labels", {})]

    s3_env = mlflow.s3.env()
    apply([
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3"}, "stringData": s3_env},
        {"apiVersion": "kaip.dev/v1alpha1", "kind": "Model", "metadata": {"name": "digits"},
         "spec": {"owner": "ml",
                  "artifact": {"uri": "models:/digits@latest", "format": "sklearn",
                               "trust": True},
                  "envFrom": [{"secretRef": {"name": "s3"}}],
                  "resources": {"cpu": "100m", "memory": "256Mi"},
                  "scaling": {"minReplicas": 1, "maxReplicas": 1}}},
    ])  # fmt: skip
    (tmp_path / "queues.yaml").write_text(queues(ns, cpu=0))
    cluster.kubectl("apply", "-f", str(tmp_path / "queues.yaml"))
    environment = {
        **os.environ,
        **s3_env,  # the operator's S3 credentials, the standard AWS way
        "KAIP_REGISTRY__BACKEND": "mlflow",
        "KAIP_REGISTRY__MLFLOW_URI": mlflow.url,
        "KAIP_KUBE__KUEUE_QUEUE": "team",
        "KAIP_KUBE__IMAGE": image,  # the Model's pods: the image the node's registry holds
    }
    with (tmp_path / "operator.log").open("wb") as out:
        operator = subprocess.Popen(
            [sys.executable, "-m", "kaip.cli", "operator",
             "--kubeconfig", str(cluster.plane.kubeconfig), "--namespace", ns,
             "--interval", "1", "--prometheus-url", "http://127.0.0.1:9"],
            cwd=REPO_ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        apply([
            {"apiVersion": "kaip.dev/v1alpha1", "kind": "TrainingJob",
             "metadata": {"name": "train"},
             "spec": {"owner": "ml", "image": image, "command": ["python", "-c", TRAINER],
                      "env": {"C": "0.5"}, "envFrom": [{"secretRef": {"name": "s3"}}],
                      "resources": {"cpu": "500m", "memory": "512Mi"}, "maxRetries": 0,
                      "output": {"uri": f"s3://{BUCKET}/digits/model.joblib",
                                 "format": "sklearn", "model": "digits"}}},
        ])  # fmt: skip
        [job] = until(lambda: items("jobs"), "the operator to create the Job", tail)
        name = job["metadata"]["name"]
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team"
        assert job["spec"]["suspend"] is True
        until(
            lambda: [w for w in items("workloads.kueue.x-k8s.io") if without_quota(w)],
            "Kueue to say the Workload has no quota", tail,
        )  # fmt: skip
        assert get("job", name)["spec"]["suspend"] is True and not job_pods()

        (tmp_path / "queues.yaml").write_text(queues(ns, cpu=4))
        cluster.kubectl("apply", "-f", str(tmp_path / "queues.yaml"))
        until(lambda: get("job", name)["spec"].get("suspend") is False,
              "Kueue to admit and unsuspend the Job", tail)  # fmt: skip
        assert admitted(items("workloads.kueue.x-k8s.io")[0])
        done = until(
            lambda: (t := get("trainingjob", "train")) and job_succeeded(t) and t,
            "the TrainingJob to report its Job succeeded", tail, limit=600,
        )  # fmt: skip
        assert done["metadata"]["name"] == "train"

        # The pod really ran on the node, as rendered, and left its report as its message.
        [pod] = job_pods()
        assert pod["spec"]["nodeName"] == NODE_NAME
        [container] = pod["spec"]["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 0
        report = json.loads(terminated["message"])
        accuracy = report["metrics"]["accuracy"]
        assert 0.8 < accuracy <= 1.0 and report["params"] == {"C": "0.5"}, report
        log = kubectl("logs", pod["metadata"]["name"])
        assert f"KAIP_METRIC accuracy {accuracy!r}" in log and "uploaded" in log, log

        # Registered in MLflow with what the pod reported; the TrainingJob says so.
        def registered() -> dict[str, Any]:
            output = (get("trainingjob", "train").get("status") or {}).get("output") or {}
            return dict(output) if output.get("version") else {}

        output = until(registered, "the operator to register version 1", tail)
        body = mlflow.s3.client().get_object(Bucket=BUCKET, Key="digits/model.joblib")["Body"]
        digest = hashlib.sha256(body.read()).hexdigest()
        lineage = {"job": "train", "run": name, "version": "models:/digits/1", "digest": digest}
        assert {k: output[k] for k in lineage} == lineage, output
        assert output["metrics"] == {"accuracy": accuracy} and "problem" not in output, output
        import mlflow as mlflow_client

        client = mlflow_client.MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url)
        one = client.get_model_version("digits", "1")
        assert client.get_run(one.run_id).data.metrics == {"accuracy": accuracy}
        assert client.get_run(one.run_id).data.params == {"C": "0.5"}

        # The Model following models:/digits@latest runs a revision of it, with its lineage.
        [revision] = until(
            lambda: [r for r in (get("model", "digits").get("status") or {}).get("revisions")
                     or [] if r.get("source")],
            "the Model to take version 1", tail,
        )  # fmt: skip
        assert revision["source"] == lineage and revision["weight"] == 100, revision
    finally:
        stop(operator)
        cluster.kubectl("delete", "clusterqueue", f"cq-{ns}", "--wait=false", check=False)
        kubectl("delete", "models,trainingjobs", "--all", "--wait=false", check=False)

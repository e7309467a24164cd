"""The documented cluster path on real pods: ``helm install`` the chart, ``kubectl apply`` the
quickstart, and everything runs for real on the real node. The steps are README.md's "The
quickstart on a cluster", one for one: the images from ``make images`` in a registry the node
pulls from, the chart told which ones to run, the model trained by ``train.py`` and served over
http with the digest it printed pinned, ``examples/quickstart/kaip.yaml`` with the README's edits
applied with ``kubectl apply``. One thing differs, because the test node runs no cluster DNS: the
App's ``KAIP_GATEWAY_URL`` names the Model's Service by its ClusterIP, not ``digits``.

* The chart's operator runs as a real pod (image from the node's registry) under its own
  ServiceAccount and RBAC, in a namespace enforcing the restricted Pod Security profile, and is
  never refused anything (the apiserver's audit log of its ServiceAccount has no 403).
* The quickstart's sklearn Model, its artifact served over http by this test with its sha256
  pinned: the init container fetches and verifies it, the Model gets Ready, and Triton's client
  predicts through the Model's Service (ClusterIP, kube-proxy) what ``model.predict`` says. A
  wrong digest stops the pod in its init container.
* The quickstart's App (its image built by ``make images``) answers through its Service, asking
  the Model through the Model's Service.
* Deleting a serving pod under load loses no request.
* A TrainingJob runs as a real Job: its pod's exit code decides success or failure.
* The portal (``kaip portal`` with a kubeconfig) follows a real pod's log live on the
  resource's page: the kubelet serves it, the API server passes it on.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest
import yaml
from chart import ArtifactServer, Env, operator_log, serve_artifacts, wait_for
from kube_harness import free_port
from node_harness import (
    NODE_NAME,
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    OPERATOR_USER,
    REPO_ROOT,
    RealCluster,
)
from node_namespace import NodeNamespaceError

QUICKSTART = REPO_ROOT / "examples" / "quickstart"
CLIENTS = Path(__file__).with_name("clients")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The quickstart's model, trained by its own train.py, and the sha256 it printed."""
    out = tmp_path_factory.mktemp("artifacts") / "model.joblib"
    done = subprocess.run(
        [sys.executable, str(QUICKSTART / "train.py"), str(out)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (digest,) = re.findall(r"sha256 ([0-9a-f]{64})", done.stdout)
    assert digest == sha256(out)
    return out, digest


@pytest.fixture(scope="module")
def artifacts(real_cluster: RealCluster, trained: tuple[Path, str]) -> Iterator[ArtifactServer]:
    """model.joblib on an http server the pods reach (the README: "any http(s) server")."""
    with serve_artifacts(real_cluster, trained[0].parent) as server:
        yield server


# -- the operator, installed by helm once a session (conftest.py) -------------------------------


@pytest.fixture(scope="module")
def env(real_cluster: RealCluster, chart: Mapping[str, str], prometheus: str) -> Iterator[Env]:
    """The chart's operator at work in the quickstart's namespace."""
    env = Env(real_cluster, chart["quickstart"], prometheus)
    yield env
    env.clear()


# -- the quickstart ------------------------------------------------------------------------------


def quickstart() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((QUICKSTART / "kaip.yaml").read_text())
    return {doc["kind"]: doc for doc in docs if doc}


def model_doc(name: str, artifact_url: str, digest: str, **spec: Any) -> dict[str, Any]:
    """The quickstart's Model with the README's edit: the artifact's http(s) URL and its sha256
    instead of ``trust: true`` (a pinned digest is what makes a pickle acceptable)."""
    doc = quickstart()["Model"]
    doc["metadata"]["name"] = name
    artifact = doc["spec"]["artifact"]
    del artifact["trust"]
    artifact.update(uri=f"{artifact_url}/model.joblib", sha256=digest)
    doc["spec"].update(spec)
    return doc


def app_doc(cluster: RealCluster, model_address: str) -> dict[str, Any]:
    """The quickstart's App with the README's edit (its image where it was pushed), and the one
    change this node needs: no cluster DNS, so the Model's Service by its ClusterIP."""
    doc = quickstart()["App"]
    doc["spec"]["image"] = cluster.images["digits-ui"]
    env = doc["spec"]["env"]
    assert env["KAIP_GATEWAY_URL"] == "http://digits:8000", "the Model's Service, by DNS"
    env["KAIP_GATEWAY_URL"] = f"http://{model_address}"
    return doc


def rows(count: int) -> list[list[float]]:
    from sklearn.datasets import load_digits

    x, _ = load_digits(return_X_y=True)
    return [list(map(float, r)) for r in x[:count]]


def predict_in_node(env: Env, address: str, model: str, data: list[list[float]]) -> list[Any]:
    out = env.cluster.in_node(
        [sys.executable, str(CLIENTS / "oip_infer.py"), address, model],
        input=json.dumps(data),
        timeout=120,
    )
    return list(json.loads(out.stdout))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_operator_runs_as_a_pod_under_its_service_account(env: Env) -> None:
    cluster = env.cluster
    (pod,) = json.loads(cluster.kubectl("-n", OPERATOR_NAMESPACE, "get", "pods", "-o", "json"))[
        "items"
    ]
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod["spec"]["serviceAccountName"] == OPERATOR_ACCOUNT
    assert pod["spec"]["containers"][0]["image"] == cluster.images["operator"]
    assert pod["status"]["phase"] == "Running"
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])
    namespace = json.loads(cluster.kubectl("get", "namespace", OPERATOR_NAMESPACE, "-o", "json"))
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # The pod has no readiness probe: Running says the process started, not that it logged yet.
    wait_for("the operator's first log line", lambda: "(in-cluster)" in operator_log(cluster), 180)
    log = operator_log(cluster)
    assert "Traceback" not in log, log[-4000:]


def test_the_quickstart_model_fetches_verifies_and_predicts_through_its_service(
    env: Env, artifacts: ArtifactServer, trained: tuple[Path, str]
) -> None:
    model, digest = trained
    env.apply([model_doc("digits", artifacts.url, digest)])
    env.wait_ready("model", "digits")
    assert "/model.joblib" in artifacts.requests, "the init container fetched it over http"
    (pod,) = env.items("pods", "app.kubernetes.io/name=digits")
    (fetch,) = pod["status"]["initContainerStatuses"]
    assert fetch["name"] == "fetch-artifact"
    assert fetch["state"]["terminated"]["exitCode"] == 0
    fetched = env.kubectl("logs", pod["metadata"]["name"], "-c", "fetch-artifact")
    assert "artifact of model digits ready at /var/lib/kaip/artifacts/" in fetched

    data = rows(32)
    expected = joblib.load(model).predict(data).tolist()
    address = f"{env.cluster_ip('digits')}:8000"

    def predicted() -> list[Any] | None:
        try:
            return predict_in_node(env, address, "digits", data)
        except NodeNamespaceError:  # refused until kube-proxy has programmed the new Service
            return None

    assert wait_for("the Model's Service to answer", predicted, 120) == expected


def test_a_wrong_digest_stops_the_pod_in_its_init_container(
    env: Env, artifacts: ArtifactServer
) -> None:
    env.apply([model_doc("digits-tampered", artifacts.url, "0" * 64)])

    def failed_fetch() -> dict[str, Any] | None:
        for pod in env.items("pods", "app.kubernetes.io/name=digits-tampered"):
            for status in pod["status"].get("initContainerStatuses") or []:
                state = status.get("lastState", {}).get("terminated") or status["state"].get(
                    "terminated"
                )
                if state and state["exitCode"] != 0:
                    return dict(pod)
        return None

    pod = wait_for("the fetch to fail", failed_fetch, 240)
    name = pod["metadata"]["name"]

    def fetch_log() -> str:
        # The kubelet restarts a failed init container: the failure may be the previous run's.
        log = ""
        for previous in ((), ("--previous",)):
            log += env.kubectl("logs", name, "-c", "fetch-artifact", *previous, check=False)
        return log if "but the spec pins" in log else ""

    log = wait_for("the fetch's log", fetch_log, 120)
    assert f"has sha256 {'0' * 64}" not in log and f"pins {'0' * 64}" in log, log
    assert not pod["status"].get("containerStatuses", [{}])[0].get("ready")
    env.kubectl("delete", "model", "digits-tampered", "--wait=false")


def test_the_quickstart_app_answers_through_its_service(env: Env) -> None:
    env.apply([app_doc(env.cluster, f"{env.cluster_ip('digits')}:8000")])
    env.wait_ready("app", "digits-ui")
    url = f"http://{env.cluster_ip('digits-ui')}:8501/"

    def answer() -> subprocess.CompletedProcess[str] | None:
        try:
            return env.cluster.in_node([sys.executable, "-c", GET, url])
        except NodeNamespaceError:  # refused until kube-proxy has programmed the new Service
            return None

    out = wait_for("the App's Service to answer", answer, 120)
    assert out.stdout.startswith("200 "), out.stdout
    assert "The model reads this digit as 0" in out.stdout


GET = """\
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=15) as r:
    print(r.status, r.read().decode(errors="replace"))
"""


def test_deleting_a_serving_pod_under_load_loses_no_request(
    env: Env, artifacts: ArtifactServer, trained: tuple[Path, str], tmp_path: Path
) -> None:
    pinned = {"minReplicas": 2, "maxReplicas": 2, "targetConcurrency": 16}
    small = {"cpu": "200m", "memory": "512Mi"}
    env.apply([model_doc("digits-ha", artifacts.url, trained[1], scaling=pinned, resources=small)])
    env.wait_ready("model", "digits-ha")
    selector = "app.kubernetes.io/name=digits-ha"
    pods = env.items("pods", selector)
    assert len(pods) == 2
    body = tmp_path / "body.json"
    data = rows(1)
    body.write_text(
        json.dumps(
            {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": data[0]}]}
        )
    )
    stop, result = tmp_path / "stop", tmp_path / "result.json"
    url = f"http://{env.cluster_ip('digits-ha')}:8000/v2/models/digits-ha/infer"
    load = subprocess.Popen(
        [
            *env.cluster.node.enter(net_only=True),
            sys.executable, str(CLIENTS / "load.py"), url, str(body),
            "--concurrency", "8", "--seconds", "240", "--stop", str(stop), "--out", str(result),
        ],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert load.stdout is not None and load.stdout.readline().strip() == "started"
        time.sleep(2)
        victim = pods[0]["metadata"]["name"]
        env.kubectl("delete", "pod", victim, "--wait=false")

        def replaced() -> bool:
            current = env.items("pods", selector)
            ready = [
                p
                for p in current
                if p["metadata"]["name"] != victim
                and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions", [])
                )
            ]
            return len(ready) == 2 and victim not in {p["metadata"]["name"] for p in current}

        wait_for("the deleted pod replaced and gone", replaced, 240)
        time.sleep(3)
    finally:
        stop.touch()
        load.wait(60)
    counts = json.loads(result.read_text())
    print(f"pod deletion under load (c=8): {counts}")
    assert counts["ok"] > 0
    assert counts["failed"] == 0, counts
    env.kubectl("delete", "model", "digits-ha", "--wait=false")


TRAINING = """\
apiVersion: kaip.dev/v1alpha1
kind: TrainingJob
metadata: {{name: {name}}}
spec:
  owner: research
  image: {image}
  command: [python, -c, "import sys; print('training step 1/1'); sys.exit({code})"]
  resources: {{cpu: 100m, memory: 128Mi}}
  maxRetries: 0
"""


def test_a_training_job_runs_to_completion_and_its_exit_code_decides(env: Env) -> None:
    image = env.cluster.images["server"]
    docs = [
        yaml.safe_load(TRAINING.format(name=n, image=image, code=c))
        for n, c in (("tune", 0), ("broken", 3))
    ]
    env.apply(docs)

    def condition(name: str, type_: str) -> dict[str, Any]:
        job = env.get("trainingjob", name)
        for c in (job.get("status") or {}).get("conditions") or []:
            if c["type"] == type_:
                return dict(c)
        return {}

    wait_for("tune Ready", lambda: condition("tune", "Ready").get("status") == "True", 300)
    assert condition("tune", "Ready")["reason"] == "JobSucceeded"
    (job,) = env.items("jobs", "app.kubernetes.io/name=tune")
    assert job["status"]["succeeded"] == 1
    (pod,) = env.items("pods", "app.kubernetes.io/name=tune")
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert "training step 1/1" in env.kubectl("logs", pod["metadata"]["name"])

    wait_for(
        "broken Degraded", lambda: condition("broken", "Degraded").get("status") == "True", 300
    )
    assert condition("broken", "Degraded")["reason"] == "JobFailed"
    (failed,) = env.items("pods", "app.kubernetes.io/name=broken")
    assert failed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert condition("broken", "Ready")["status"] == "False"


CHATTY = """\
apiVersion: kaip.dev/v1alpha1
kind: TrainingJob
metadata: {{name: chatty}}
spec:
  owner: research
  image: {image}
  command:
    - python
    - -uc
    - |-
      import time
      for i in range(240): print('epoch', i); time.sleep(0.5)
  resources: {{cpu: 100m, memory: 128Mi}}
  maxRetries: 0
"""


def test_the_portal_follows_a_pods_log_live(env: Env, tmp_path: Path) -> None:
    """A TrainingJob whose pod prints a line every half second: the log stream of its page in
    ``kaip portal`` shows those lines, and shows later ones while it stays open."""
    env.apply([yaml.safe_load(CHATTY.format(image=env.cluster.images["server"]))])

    def running() -> bool:
        pods = env.items("pods", "app.kubernetes.io/name=chatty")
        return any(p["status"].get("phase") == "Running" for p in pods)

    wait_for("chatty's pod running", running, 300, env.cluster)
    plane, port = env.cluster.plane, free_port()
    log = tmp_path / "portal.log"
    with log.open("wb") as out:
        portal = subprocess.Popen(
            [sys.executable, "-m", "kaip.cli", "portal", "--kubeconfig", str(plane.kubeconfig),
             "-n", env.namespace, "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the portal", lambda: _answers(url + "/login"), 120)
        headers = {"Authorization": f"Bearer {plane.token()}"}
        seen: list[int] = []
        deadline = time.monotonic() + 120  # a bound on a hang, not a timing check
        with httpx.stream("GET", f"{url}/resources/chatty/logs", headers=headers,
                          trust_env=False, timeout=60) as stream:  # fmt: skip
            assert stream.status_code == 200, stream.read()
            for line in stream.iter_lines():
                steps = [int(n) for n in re.findall(r"chatty-\S+ \| epoch (\d+)", line)]
                if steps:
                    seen.append(max(steps))
                if len(seen) >= 2 and seen[-1] >= seen[0] + 3:
                    break
                assert time.monotonic() < deadline, (seen, log.read_text()[-2000:])
        assert seen and seen[-1] >= seen[0] + 3, seen  # later lines reached the open page
    finally:
        portal.terminate()
        portal.wait(timeout=30)
        env.kubectl("delete", "trainingjob", "chatty", "--wait=false", check=False)
    assert plane.token() not in log.read_text()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, trust_env=False, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_the_operator_was_never_forbidden(env: Env) -> None:
    """Zero 403s for the operator's ServiceAccount over the whole run, from the audit log."""
    log = env.cluster.plane.audit_log
    assert log is not None
    requests, forbidden = 0, []
    for path in sorted(log.parent.glob(log.name + "*")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("user", {}).get("username") != OPERATOR_USER:
                continue
            if event.get("stage") != "ResponseComplete":
                continue
            requests += 1
            if (event.get("responseStatus") or {}).get("code") == 403:
                forbidden.append(f"{event['verb']} {event['requestURI']}")
    print(f"operator requests audited: {requests}, forbidden: {len(forbidden)}")
    assert requests > 50, "the audit log saw the operator at work"
    assert not forbidden, forbidden[:20]

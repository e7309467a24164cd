"""The kaip operator against the real control plane, running under exactly the chart's RBAC.

The chart (rendered by a real helm) is applied to the apiserver; the operator runs as a real
process (`kaip operator`) authenticated with a token of the chart's ServiceAccount, so every
request it makes is judged by the chart's ClusterRole and RoleBinding. The canary gates read a
Prometheus stand-in serving chosen numbers. kwok marks pods Running and Ready.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_harness import ControlPlane, write_kubeconfig

sys.path.insert(0, str(Path(__file__).parents[1] / "contract"))
sys.path.insert(0, str(Path(__file__).parents[1] / "e2e_local"))
from prometheus_double import PrometheusDouble, serve_prometheus
from test_render_dry_run import INFERENCE_CRD, INFERENCE_MODULE, module_dir
from webhook_receiver import webhook_receiver

from kaip.kube.operator.metrics import RevisionMetrics
from kaip.plan import revision_id
from kaip.spec import load_text

REPO = Path(__file__).resolve().parents[2]
INFERENCE_GATEWAY = "gateways/inference"
RELEASE_NAMESPACE = "kaip-system"
SERVICE_ACCOUNT = "kaip-operator"
POD_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def unshare_mounts() -> list[str]:
    """``unshare`` arguments for a private mount namespace (to mount a service account where a
    pod has it): root has the right itself, anyone else gets it in a user namespace of their own
    (root inside maps to them outside)."""
    as_user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", *as_user, "--mount", "--propagation", "private"]


def can_run_as_a_pod() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run([*unshare_mounts(), "true"], capture_output=True, timeout=30)
    return done.returncode == 0


class Operator:
    """``kaip operator`` as a child process, restartable, its log kept across restarts.

    Given ``account`` (a directory holding ``token``, ``ca.crt`` and ``namespace``), it runs as
    in a pod: no kubeconfig, ``KUBERNETES_SERVICE_HOST``/``PORT`` set, and that directory
    mounted at the pod's service-account path in a private mount namespace, so the
    operator takes its in-cluster code path. Otherwise it uses ``kubeconfig``.
    """

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        prometheus: str,
        log: Path,
        account: Path | None = None,
        server: str = "",
        identity: str = "kaip-operator-0",
        lease: tuple[float, float, float] = (120, 90, 2),
    ) -> None:
        operator = [sys.executable, "-m", "kaip.cli", "operator"]
        if account is None:
            operator += ["--kubeconfig", str(kubeconfig)]
        operator += ["--namespace", namespace, "--prometheus-url", prometheus, "--interval", "1"]
        # A CRD a test installs (InferencePool) is looked for again within 2 s, not 30.
        operator += ["--rediscover", "2"]
        # The chart's Lease, as its Deployment passes it; a restart keeps the identity (the
        # pod's name), so a killed and restarted operator leads again at once. The long renew
        # deadline outlasts the apiserver restarts below: a leader that cannot renew exits, and
        # here no kubelet would start it again.
        duration, deadline, retry = lease
        operator += ["--leader-election-namespace", RELEASE_NAMESPACE]
        operator += ["--lease-duration", str(duration), "--renew-deadline", str(deadline)]
        operator += ["--retry-period", str(retry)]
        self.args = operator
        self.env = {**os.environ, "POD_NAME": identity}
        if account is not None:
            host, port = urllib.parse.urlsplit(server).netloc.rsplit(":", 1)
            self.env.update(KUBERNETES_SERVICE_HOST=host, KUBERNETES_SERVICE_PORT=port)
            self.env.pop("KUBECONFIG", None)
            to = POD_ACCOUNT_DIR
            mount = f'mount -t tmpfs kaip-pod /var/run && mkdir -p {to} && mount --bind "$0" {to}'
            mount += ' && exec "$@"'
            self.args = [*unshare_mounts(), "sh", "-c", mount]
            self.args += [str(account), *operator]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.args,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=self.env,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL: no chance to save anything on the way out."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Env:
    plane: ControlPlane
    namespace: str
    prometheus: PrometheusDouble
    operator: Operator
    restarts: list[tuple[datetime, datetime]] = field(default_factory=list)
    """When the apiserver was down or starting (from its kill to 5 s after /readyz)."""

    def kubectl(self, *args: str, check: bool = True) -> str:
        return self.plane.kubectl("-n", self.namespace, *args, check=check)

    def apply(self, text: str) -> None:
        path = self.plane.workdir / f"spec-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(text)
        self.kubectl("apply", "-f", str(path))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        out = self.kubectl("get", kind, name, "-o", "json", check=False)
        return json.loads(out) if out.strip() else {}

    def items(self, kind: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", kind, "-o", "json"] + (["-l", selector] if selector else [])
        return list(json.loads(self.kubectl(*args))["items"])

    def wait_for(
        self, kind: str, name: str, what: str, check: Callable[[dict[str, Any]], Any]
    ) -> dict[str, Any]:
        """The object once ``check`` holds for it."""

        def probe() -> dict[str, Any] | None:
            obj = self.get(kind, name)
            return obj if obj and check(obj) else None

        found: dict[str, Any] = self.wait(f"{kind} {name}: {what}", probe)
        return found

    def wait(self, what: str, probe: Callable[[], Any], timeout: float = 90) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            time.sleep(0.5)
        pytest.fail(f"timed out waiting for {what}; operator log:\n{self.operator.text()[-4000:]}")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def current_and(obj: dict[str, Any], type_: str, status: str) -> bool:
    c = condition(obj, type_)
    return bool(
        c
        and c["status"] == status
        and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
    )


def chart_account(
    plane: ControlPlane, helm: Path, work: Path, namespace: str, *sets: str
) -> tuple[Path | None, Path]:
    """Apply the chart (watching ``namespace``); the operator's account as a pod mounts it
    (None where that cannot be done) and a kubeconfig with the same token."""
    plane.kubectl("create", "namespace", RELEASE_NAMESPACE, check=False)
    plane.kubectl(
        "label", "namespace", RELEASE_NAMESPACE, "pod-security.kubernetes.io/enforce=restricted",
        "--overwrite",
    )  # fmt: skip
    values = [f"watchNamespaces={{{namespace}}}", *sets]
    chart = subprocess.run(
        [
            str(helm), "template", "kaip", str(REPO / "charts" / "kaip"), "--include-crds",
            "--namespace", RELEASE_NAMESPACE, *(a for v in values for a in ("--set", v)),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert chart.returncode == 0, chart.stderr
    rendered = plane.workdir / "chart.yaml"
    rendered.write_text(chart.stdout)
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(rendered))
    for doc in yaml.safe_load_all(chart.stdout):
        if doc and doc["kind"] == "CustomResourceDefinition":
            name = doc["metadata"]["name"]
            plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
    token = plane.kubectl(
        "create", "token", SERVICE_ACCOUNT, "-n", RELEASE_NAMESPACE, "--duration=2h"
    ).strip()
    kubeconfig = work / "kubeconfig-operator.yaml"
    write_kubeconfig(kubeconfig, plane.server, plane.ca_file, SERVICE_ACCOUNT, token)
    account = None
    if can_run_as_a_pod():  # what the chart's Deployment mounts into the operator's pod
        account = work / "serviceaccount"
        account.mkdir()
        (account / "token").write_text(token)
        (account / "namespace").write_text(RELEASE_NAMESPACE)
        shutil.copy(plane.ca_file, account / "ca.crt")
    return account, kubeconfig


@pytest.fixture(scope="module")
def env(
    kube_cluster: ControlPlane, helm: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    plane = kube_cluster
    namespace = f"op-{uuid.uuid4().hex[:6]}"
    plane.kubectl("create", "namespace", namespace)
    work = tmp_path_factory.mktemp("operator")
    account, kubeconfig = chart_account(plane, helm, work, namespace)
    with serve_prometheus() as prometheus:
        operator = Operator(
            kubeconfig,
            namespace,
            prometheus.url,
            work / "operator.log",
            account=account,
            server=plane.server,
        )
        # the Gateway prefix-affinity Models' inference routes attach to (none need exist)
        operator.env["KAIP_KUBE__INFERENCE_GATEWAY"] = INFERENCE_GATEWAY
        operator.start()
        try:
            yield Env(plane, namespace, prometheus, operator)
        finally:
            operator.stop()
            if os.environ.get("KAIP_KEEP_LOGS"):
                print(operator.text())
            plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


MODEL = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {{name: {name}}}
spec:
  owner: ml
  artifact: {{uri: https://models.example.com/digits.onnx, format: onnx}}
  resources: {{cpu: 100m, memory: 128Mi}}
  scaling: {{minReplicas: 1, maxReplicas: 1}}
  serve: {{batching: {{maxBatchSize: {batch}}}}}
  rollout:
    steps:
      - {{weight: 20, pauseSeconds: 2}}
      - {{weight: 60, pauseSeconds: 2}}
      - {{weight: 100, pauseSeconds: 2}}
    gates: {{maxErrorRate: 0.05, minRequests: 10}}
"""
APP = """\
apiVersion: kaip.dev/v1alpha1
kind: App
metadata: {{name: shop}}
spec:
  owner: web
  image: ghcr.io/example/shop:{version}
  resources: {{cpu: 100m, memory: 128Mi}}
  scaling: {{minReplicas: 1, maxReplicas: 1}}
  rollout: {{strategy: replace}}
"""
TRAINING = """\
apiVersion: kaip.dev/v1alpha1
kind: TrainingJob
metadata: {name: tune}
spec:
  owner: research
  image: ghcr.io/example/train:1
  command: [python, train.py]
  resources: {cpu: 100m, memory: 128Mi}
"""


def owned_by(items: list[dict[str, Any]], uid: str) -> list[str]:
    return sorted(
        i["metadata"]["name"]
        for i in items
        if any(o["uid"] == uid for o in i["metadata"].get("ownerReferences") or [])
    )


def test_each_kind_converges_updates_and_is_garbage_collected(env: Env) -> None:
    env.apply(MODEL.format(name="digits", batch=64))
    env.apply(APP.format(version=1))
    env.apply(TRAINING)
    model = env.wait_for("model", "digits", "Ready", lambda m: current_and(m, "Ready", "True"))
    env.kubectl("wait", "--for=condition=Ready", "model/digits", "--timeout=10s")
    assert model["status"]["revisions"][0]["weight"] == 100
    assert model["status"]["url"] == f"http://digits.{env.namespace}.svc:8000"
    assert model["status"]["servedNames"] == ["digits"]  # serve.names, default metadata.name
    app = env.wait_for("app", "shop", "Ready", lambda a: current_and(a, "Ready", "True"))
    first = app["status"]["revisions"][0]["name"]
    job = env.wait_for(
        "trainingjob",
        "tune",
        "running or done",
        lambda t: current_and(t, "Progressing", "True") or current_and(t, "Ready", "True"),
    )
    assert condition(job, "Ready")["reason"] in ("JobRunning", "JobSucceeded")
    assert condition(job, "Degraded")["status"] == "False"
    assert owned_by(env.items("jobs"), job["metadata"]["uid"])

    env.apply(APP.format(version=2))
    updated = env.wait_for(
        "app",
        "shop",
        "Ready on its new revision",
        lambda a: current_and(a, "Ready", "True") and a["status"]["revisions"][0]["name"] != first,
    )
    names = owned_by(env.items("deployments"), updated["metadata"]["uid"])
    assert names == [f"shop-{updated['status']['revisions'][0]['name']}"], "old revision pruned"

    uid = model["metadata"]["uid"]
    assert owned_by(env.items("deployments"), uid)
    env.kubectl("delete", "model", "digits", "--wait=true", "--timeout=30s")
    assert "finalizers" not in model["metadata"], "deleting never waits for the operator"
    kinds = ("deployments", "services", "configmaps")
    env.wait(
        "the Model's objects garbage-collected",
        lambda: not owned_by([i for k in kinds for i in env.items(k)], uid),
    )


def test_an_invalid_resource_is_degraded_with_the_message_and_not_retried(env: Env) -> None:
    env.apply(INVALID)
    bad = env.wait_for("app", "broken", "Degraded", lambda m: current_and(m, "Degraded", "True"))
    degraded = condition(bad, "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert degraded["message"].startswith("spec.image: App 'broken' has no image")
    time.sleep(2)  # a write in flight would land by now
    version = env.get("app", "broken")["metadata"]["resourceVersion"]
    time.sleep(5)
    again = env.get("app", "broken")
    assert again["metadata"]["resourceVersion"] == version, "an invalid spec is not retried"
    assert condition(again, "Degraded") == degraded
    assert not env.items("deployments", "app.kubernetes.io/name=broken")
    env.apply(INVALID + "  image: ghcr.io/example/broken:1\n")
    fixed = env.wait_for(
        "app", "broken", "Ready once fixed", lambda a: current_and(a, "Ready", "True")
    )
    assert condition(fixed, "Degraded")["status"] == "False"


def test_objects_someone_else_made_under_a_models_name_are_left_byte_for_byte(env: Env) -> None:
    """Issue 11 #2 as reported: a default-deny NetworkPolicy, a Service and a ServiceAccount
    that share a Model's name. The operator used to force-apply over all three and add owner
    references (deleting the Model would have garbage-collected them)."""
    name = "billing"
    theirs = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": "billing-v1"}, "ports": [{"name": "web", "port": 80}]},
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
    ]
    path = env.plane.workdir / f"theirs-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump_all(theirs))
    env.kubectl("create", "-f", str(path))
    kinds = ("networkpolicy", "service", "serviceaccount")
    before = {kind: env.get(kind, name) for kind in kinds}

    env.apply(MODEL.format(name=name, batch=64))
    model = env.wait_for("model", name, "Degraded", lambda m: current_and(m, "Degraded", "True"))
    degraded = condition(model, "Degraded")
    assert degraded["reason"] == "ForeignObjects"
    message = degraded["message"]
    for kind in ("NetworkPolicy", "Service"):
        assert (
            f"{kind} {env.namespace}/{name} (its fields are managed by kubectl-create)" in message
        )
    # A bare ServiceAccount has no fields anyone manages.
    assert f"ServiceAccount {env.namespace}/{name} (no field manager is recorded)" in message
    assert "not this Model's, so kaip leaves them untouched" in degraded["message"]
    assert condition(model, "Ready")["status"] == "False"
    time.sleep(2)  # a write in flight would land by now
    version = env.get("model", name)["metadata"]["resourceVersion"]
    time.sleep(5)
    assert env.get("model", name)["metadata"]["resourceVersion"] == version, "not retried"
    assert {kind: env.get(kind, name) for kind in kinds} == before, "byte for byte"
    assert not env.items("deployments", f"app.kubernetes.io/name={name}"), "applies nothing"

    env.kubectl("delete", "model", name, "--wait=true", "--timeout=30s")
    time.sleep(2)  # the garbage collector would have acted on an owner reference by now
    assert {kind: env.get(kind, name) for kind in kinds} == before, "not collected either"

    # Once the name is free, the Model is served; it is retried when it changes.
    env.apply(MODEL.format(name=name, batch=64))
    env.wait_for("model", name, "Degraded again", lambda m: current_and(m, "Degraded", "True"))
    for kind in kinds:
        env.kubectl("delete", kind, name)
    env.kubectl("annotate", "model", name, "example.com/retry=1")
    ready = env.wait_for("model", name, "Ready", lambda m: current_and(m, "Ready", "True"))
    assert name in owned_by(env.items("services"), ready["metadata"]["uid"])


# Valid for the CRD (and for `kaip up`), but Kubernetes runs images, not commands.
INVALID = """\
apiVersion: kaip.dev/v1alpha1
kind: App
metadata: {name: broken}
spec:
  owner: web
  command: [python, app.py]
"""


def canary_step(obj: dict[str, Any]) -> int:
    """1-based step of the canary in flight, 0 when none."""
    canary = ((obj.get("status") or {}).get("rollout") or {}).get("canary")
    return int(canary["step"]) + 1 if canary else 0


def live(obj: dict[str, Any]) -> list[str]:
    return [r["name"] for r in (obj.get("status") or {}).get("revisions") or []]


def weights(env: Env, name: str) -> list[int]:
    route = env.get("httproute", name)
    return [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]]


def events(env: Env, name: str) -> list[str]:
    items = env.items("events")
    mine = [e for e in items if e["involvedObject"]["name"] == name]
    mine.sort(key=lambda e: e["metadata"]["creationTimestamp"] + e["metadata"]["name"])
    return [e["reason"] for e in mine]


def test_a_canary_resumes_at_its_step_after_an_operator_restart(env: Env) -> None:
    healthy = RevisionMetrics(100, 0, 20.0)
    # Step 2 is a manual pause, so the canary is surely there while the operator is down.
    env.apply(PAUSED_MODEL.format(name="fraud", batch=64))
    stable = env.wait_for("model", "fraud", "Ready", lambda m: current_and(m, "Ready", "True"))
    env.prometheus.numbers[stable["status"]["revisions"][0]["name"]] = healthy
    env.apply(PAUSED_MODEL.format(name="fraud", batch=8))
    started = env.wait_for("model", "fraud", "canary started", canary_step)
    canary = started["status"]["rollout"]["canary"]["revision"]
    assert weights(env, "fraud") == [80, 20]
    env.prometheus.numbers[canary] = healthy
    midway = env.wait_for("model", "fraud", "canary at step 2", lambda m: canary_step(m) == 2)
    env.operator.kill()
    assert weights(env, "fraud") == [40, 60]
    assert bookkeeping(midway) == [], "nothing but status.rollout holds the canary's state"
    env.operator.start()
    # released at step 2: a canary started again would show a second CanaryStarted below
    promoted = kaip_rollout(env, "promote", "fraud")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    done = env.wait_for(
        "model",
        "fraud",
        "canary promoted",
        lambda m: current_and(m, "Ready", "True") and live(m) == [canary],
    )
    decision = done["status"]["rollout"]["lastDecision"]
    assert decision["action"] == "promote" and decision["evidence"]["step"] == 3
    assert events(env, "fraud") == [
        "CanaryStarted",
        "CanaryAdvanced",
        "CanaryAdvanced",
        "CanaryPromoted",
    ]
    assert weights(env, "fraud") == [100]


def bookkeeping(obj: dict[str, Any]) -> list[str]:
    """Finalizers and operator annotations on ``obj``: a kaip resource carries none."""
    meta = obj["metadata"]
    notes = [a for a in meta.get("annotations") or {} if a.startswith(("kaip.dev/", "kopf."))]
    return list(meta.get("finalizers") or []) + notes


def test_a_resource_is_deleted_at_once_even_mid_canary_with_the_operator_down(env: Env) -> None:
    env.apply(MODEL.format(name="unwatched", batch=64))
    stable = env.wait_for("model", "unwatched", "Ready", lambda m: current_and(m, "Ready", "True"))
    env.apply(MODEL.format(name="unwatched", batch=8))  # no metrics: the canary waits at step 1
    busy = env.wait_for("model", "unwatched", "canary started", canary_step)
    assert bookkeeping(busy) == []
    env.operator.stop()
    try:
        env.kubectl("delete", "model", "unwatched", "--wait=true", "--timeout=20s")
    finally:
        env.operator.start()
    assert env.get("model", "unwatched") == {}
    uid = stable["metadata"]["uid"]
    env.wait(
        "the Model's objects garbage-collected",
        lambda: not owned_by(env.items("deployments") + env.items("services"), uid),
    )


def test_the_finalizer_of_an_older_operator_is_removed(env: Env) -> None:
    old = MODEL.format(name="legacy", batch=64).replace(
        "metadata: {name: legacy}", "metadata: {name: legacy, finalizers: [kaip.dev/operator]}"
    )
    env.apply(old)
    ready = env.wait_for("model", "legacy", "Ready", lambda m: current_and(m, "Ready", "True"))
    env.wait("the old finalizer removed", lambda: bookkeeping(env.get("model", "legacy")) == [])
    assert ready["metadata"]["uid"] == env.get("model", "legacy")["metadata"]["uid"]
    env.kubectl("delete", "model", "legacy", "--wait=true", "--timeout=20s")


# kwok completes a Job's pod as soon as it runs, so a TrainingJob reads JobRunning only for a
# moment (a look that comes late under load finds JobSucceeded). One that is to stay running asks
# for a node none has: its pod stays Pending, which its Job counts as active.
QUEUED = TRAINING.replace("name: tune", "name: queued") + "  nodeSelector: {kaip.dev/node: none}\n"


def active(job: dict[str, Any]) -> int:
    """The pods of a running TrainingJob's Job that the operator last reported active."""
    ready = condition(job, "Ready")
    found = re.search(r"(\d+) active", ready.get("message", ""))
    return int(found[1]) if ready.get("reason") == "JobRunning" and found else 0


def test_a_job_kueue_admitted_stays_running_after_an_operator_restart(env: Env) -> None:
    env.operator.stop()
    env.operator.env["KAIP_KUBE__KUEUE_QUEUE"] = "research"
    env.operator.start()
    try:
        env.apply(QUEUED)
        jobs = env.wait(
            "the Job created suspended for Kueue",
            lambda: [
                j
                for j in env.items("jobs", "kueue.x-k8s.io/queue-name=research")
                if j["metadata"]["name"].startswith("queued-")
            ],
        )
        (job,) = jobs
        assert job["spec"]["suspend"] is True
        name = job["metadata"]["name"]
        # What Kueue does when it admits the Job: an update by its own field manager.
        env.kubectl(
            "patch", "job", name, "--type=merge", "-p", '{"spec":{"suspend":false}}',
            "--field-manager=kueue-admission",
        )  # fmt: skip
        env.wait_for("trainingjob", "queued", "admitted: running, its pod active", active)
        starts = env.operator.text().count("kaip operator watching")
        env.operator.kill()  # a restart forgets what was applied: everything is applied again
        env.operator.start()
        env.wait(
            "the operator restarted",
            lambda: env.operator.text().count("kaip operator watching") > starts,
        )
        time.sleep(5)  # its first pass over every resource, a forced apply, is done by now
        after = env.get("job", name)
        assert after["spec"]["suspend"] is False, "an admitted Job is never suspended again"
        assert after["metadata"]["uid"] == job["metadata"]["uid"]
    finally:
        env.operator.stop()
        env.operator.env.pop("KAIP_KUBE__KUEUE_QUEUE", None)
        env.operator.start()


def test_relabelling_a_running_training_job_keeps_its_job(env: Env) -> None:
    env.apply(QUEUED.replace("name: queued", "name: relabel"))
    (job,) = env.wait(
        "the Job",
        lambda: [j for j in env.items("jobs") if j["metadata"]["name"].startswith("relabel-")],
    )
    env.wait_for("trainingjob", "relabel", "running, its pod active", active)
    env.kubectl("label", "trainingjob", "relabel", "team=vision")

    def relabelled() -> dict[str, Any] | None:
        now = env.get("job", job["metadata"]["name"])
        return now if now["metadata"]["labels"].get("team") == "vision" else None

    after = env.wait("the Job relabelled", relabelled, timeout=30)
    assert after["metadata"]["uid"] == job["metadata"]["uid"], "the running Job is kept"
    assert after["spec"]["template"] == job["spec"]["template"], "a Job's template is immutable"
    log = [line for line in env.operator.text().splitlines() if "relabel" in line]
    assert not [line for line in log if "retrying" in line], log


def test_a_failing_canary_is_rolled_back_and_shown_degraded(env: Env) -> None:
    env.apply(MODEL.format(name="risk", batch=64))
    env.wait_for("model", "risk", "Ready", lambda m: current_and(m, "Ready", "True"))
    env.apply(MODEL.format(name="risk", batch=8))
    started = env.wait_for("model", "risk", "canary started", canary_step)
    canary = started["status"]["rollout"]["canary"]["revision"]
    env.prometheus.numbers[canary] = RevisionMetrics(40, 20, 20.0)
    rolled = env.wait_for(
        "model", "risk", "rolled back", lambda m: current_and(m, "Degraded", "True")
    )
    assert condition(rolled, "Degraded")["reason"] == "RolledBack"
    assert "error rate" in condition(rolled, "Degraded")["message"]
    assert condition(rolled, "Ready")["status"] == "True", "the stable revision still serves"
    assert weights(env, "risk") == [100]
    assert "CanaryRolledBack" in events(env, "risk")


def test_the_charts_operator_pod_is_admitted_under_the_restricted_profile(env: Env) -> None:
    def running() -> bool:
        out = env.plane.kubectl(
            "-n", RELEASE_NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/name=kaip-operator",
            "-o", "jsonpath={.items[*].status.phase}",
        )  # fmt: skip
        return out.strip() == "Running"

    env.wait("the chart's operator pod Running in a restricted namespace", running)


def restart_apiserver(plane: ControlPlane) -> None:
    """Stop kube-apiserver and start it again with the same flags, port and certificates."""
    component = next(c for c in plane.components if c.name == "kube-apiserver")
    args = list(component.process.args)  # type: ignore[arg-type]
    component.process.kill()  # a crash: its graceful shutdown waits a minute for watches
    component.process.wait(30)
    time.sleep(3)  # the operator's watches and requests fail meanwhile
    with component.log.open("ab") as out:
        component.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=plane.workdir, start_new_session=True,
        )  # fmt: skip

    def ready() -> bool:
        done = subprocess.run(
            [str(plane.bin_dir / "kubectl"), "--kubeconfig", str(plane.kubeconfig),
             "get", "--raw", "/readyz"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        return done.returncode == 0

    deadline = time.monotonic() + 120
    while not ready():
        assert time.monotonic() < deadline, "kube-apiserver did not come back"
        time.sleep(1)


def test_the_operator_survives_an_apiserver_restart(env: Env) -> None:
    down = datetime.now()
    restart_apiserver(env.plane)
    env.restarts.append((down, datetime.now() + timedelta(seconds=5)))
    assert env.operator.process is not None and env.operator.process.poll() is None
    env.apply(MODEL.format(name="after-restart", batch=64))
    env.wait_for("model", "after-restart", "Ready", lambda m: current_and(m, "Ready", "True"))


def ready_model(env: Env, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create Model ``name``, wait until it is Ready; the Model and its one Deployment."""
    env.apply(MODEL.format(name=name, batch=64))
    model = env.wait_for("model", name, "Ready", lambda m: current_and(m, "Ready", "True"))
    (deployment,) = [d for d in env.items("deployments") if owned_by([d], model["metadata"]["uid"])]
    return model, deployment


def drift_lines(env: Env, name: str) -> list[str]:
    prefix = f"Model {env.namespace}/{name}: Deployment "
    return [line for line in env.operator.text().splitlines() if prefix in line]


def test_a_deleted_deployment_is_recreated_without_touching_the_model(env: Env) -> None:
    model, deployment = ready_model(env, "gone")
    meta = deployment["metadata"]
    assert not meta.get("finalizers"), "kopf's event handlers leave the Deployment alone"
    assert not [a for a in meta.get("annotations") or {} if a.startswith(("kaip.dev/", "kopf."))], (
        meta["annotations"]
    )
    env.kubectl("delete", "deployment", meta["name"], "--wait=false")

    def recreated_and_ready() -> bool:
        again = env.get("deployment", meta["name"])
        if not again or again["metadata"]["uid"] == meta["uid"]:
            return False
        now = env.get("model", "gone")
        return current_and(now, "Ready", "True") and condition(now, "Ready")["reason"] == (
            "ReplicasReady"
        )

    # Well inside the 60 s resync: the Deployment's watch events drive this.
    env.wait("the Deployment recreated and the Model Ready", recreated_and_ready, timeout=40)
    after = env.get("model", "gone")
    assert after["metadata"]["generation"] == model["metadata"]["generation"]
    assert any("was deleted: applying again" in line for line in drift_lines(env, "gone"))


def test_fields_the_operator_set_are_taken_back_and_others_left_alone(env: Env) -> None:
    _, deployment = ready_model(env, "drift")
    name = deployment["metadata"]["name"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    image = container["image"]
    # A field the operator never sets: no drift, no pass, and it survives the restore below.
    env.kubectl("annotate", "deployment", name, "example.com/ticket=OPS-1")
    time.sleep(2)
    assert drift_lines(env, "drift") == []
    intruder = env.plane.workdir / f"intruder-{uuid.uuid4().hex[:6]}.yaml"
    intruder.write_text(
        json.dumps(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": env.namespace},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": container["name"], "image": "example.com/intruder:1"}
                            ]
                        }
                    }
                },
            }
        )
    )
    env.kubectl(
        "apply", "--server-side", "--field-manager=intruder", "--force-conflicts",
        "-f", str(intruder),
    )  # fmt: skip
    env.kubectl("scale", "deployment", name, "--replicas=3")  # the Model pins 1 replica

    def restored() -> dict[str, Any] | None:
        now = env.get("deployment", name)
        spec = now["spec"]
        back = spec["replicas"] == 1 and spec["template"]["spec"]["containers"][0]["image"] == image
        return now if back else None

    now = env.wait("the operator's image and replica count restored", restored, timeout=40)
    assert now["metadata"]["annotations"]["example.com/ticket"] == "OPS-1"
    taken_back = [line for line in drift_lines(env, "drift") if "another field manager" in line]
    # One apply per intrusion at most: late events from before an apply do not count as drift.
    assert 1 <= len(taken_back) <= 2, taken_back
    env.wait_for("model", "drift", "Ready again", lambda m: current_and(m, "Ready", "True"))


def model_reads(plane: ControlPlane) -> float:
    """How many GETs of kaip Models the operator has made (the apiserver's audit log, which
    logs the operator's account only). Not the apiserver's request count: other clients read
    Models too (the final check of 2026-11-30 counted 86 against 85 while the operator's own
    log of requests showed none between the two readings)."""
    operator = f"system:serviceaccount:{RELEASE_NAMESPACE}:{SERVICE_ACCOUNT}"
    return float(plane.audited_requests(operator)[("get", "models")])


def settled_model_reads(plane: ControlPlane, quiet_s: float = 3.0, timeout_s: float = 60) -> float:
    """The Model reads count once it has not moved for ``quiet_s`` (the operator is idle)."""
    deadline = time.monotonic() + timeout_s
    reads, since = model_reads(plane), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"the operator never went quiet ({reads} Model reads)"
        time.sleep(0.5)
        now = model_reads(plane)
        if now != reads:
            reads, since = now, time.monotonic()
    return reads


def test_a_status_only_change_of_a_settled_models_deployment_costs_nothing(env: Env) -> None:
    _, deployment = ready_model(env, "quiet")
    name = deployment["metadata"]["name"]
    # The baseline is taken once the operator has gone quiet: the last readiness events of the
    # rollout (and of other tests' Models) may still run a pass or two after Ready.
    version = env.get("model", "quiet")["metadata"]["resourceVersion"]
    reads = settled_model_reads(env.plane)
    for i in range(3):
        heartbeat = {
            "type": "example.com/Heartbeat",
            "status": "True",
            "reason": "Beat",
            "message": str(i),
        }
        conditions = env.get("deployment", name)["status"]["conditions"]
        kept = [c for c in conditions if c["type"] != heartbeat["type"]]
        env.kubectl(
            "patch", "deployment", name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"conditions": [*kept, heartbeat]}}),
        )  # fmt: skip
    time.sleep(3)
    assert model_reads(env.plane) == reads, "no pass: the heartbeat changed nothing it reads"
    assert env.get("model", "quiet")["metadata"]["resourceVersion"] == version
    assert drift_lines(env, "quiet") == []


GUARD_POLICY = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingAdmissionPolicy",
    "metadata": {"name": "freeze-guarded"},
    "spec": {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": ["apps"],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["deployments"],
                }
            ]
        },
        "validations": [
            {
                "expression": "!has(object.metadata.labels) || "
                "object.metadata.labels[?'app.kubernetes.io/name'].orValue('') != 'guarded'",
                "message": "the guarded model is frozen for maintenance",
                "reason": "Forbidden",
            }
        ],
    },
}


def guard_binding(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "freeze-guarded"},
        "spec": {
            "policyName": "freeze-guarded",
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }


RETRY_LINE = re.compile(r"retrying in (\d+)s \((\w+), attempt (\d+)\)")


def retries(env: Env, name: str) -> list[tuple[int, float]]:
    """The (attempt, delay) of each retry the operator logged for Model ``name``, in order."""
    found: list[tuple[int, float]] = []
    for line in env.operator.text().splitlines():
        match = RETRY_LINE.search(line)
        if match and f"Model {env.namespace}/{name}: " in line:
            found.append((int(match[3]), float(match[1])))
    return found


def test_an_admission_denial_is_retried_with_backoff_until_it_is_lifted(env: Env) -> None:
    plane = env.plane
    policy = plane.workdir / "vap-freeze-guarded.yaml"
    policy.write_text(
        json.dumps({"apiVersion": "v1", "kind": "List",
                    "items": [GUARD_POLICY, guard_binding(env.namespace)]})
    )  # fmt: skip
    probe = plane.workdir / "vap-probe.yaml"
    probe.write_text(
        json.dumps(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": "probe",
                    "namespace": env.namespace,
                    "labels": {"app.kubernetes.io/name": "guarded"},
                },
                "spec": {
                    "selector": {"matchLabels": {"app": "probe"}},
                    "template": {
                        "metadata": {"labels": {"app": "probe"}},
                        "spec": {"containers": [{"name": "c", "image": "example.com/c:1"}]},
                    },
                },
            }
        )
    )
    plane.kubectl("apply", "-f", str(policy))  # as the admin; the operator runs under the chart
    try:

        def enforced() -> bool:
            done = subprocess.run(
                [str(plane.bin_dir / "kubectl"), "--kubeconfig", str(plane.kubeconfig),
                 "apply", "--dry-run=server", "-f", str(probe)],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            return done.returncode != 0 and "frozen for maintenance" in done.stderr

        env.wait("the admission policy enforced", enforced, timeout=30)
        env.apply(MODEL.format(name="guarded", batch=64))

        def retrying(m: dict[str, Any]) -> bool:
            return condition(m, "Ready").get("reason") == "Retrying"

        denied = env.wait_for("model", "guarded", "Retrying", retrying)
        ready = condition(denied, "Ready")
        assert ready["status"] == "Unknown"
        assert "ValidatingAdmissionPolicy 'freeze-guarded'" in ready["message"]
        assert "frozen for maintenance" in ready["message"]
        assert condition(denied, "Progressing")["status"] == "True"
        assert condition(denied, "Degraded")["reason"] != "Forbidden", "not an RBAC denial"

        def backing_off() -> bool:
            return retries(env, "guarded")[:3] == [(1, 1.0), (2, 2.0), (3, 4.0)]

        env.wait("three retries, 1 s, 2 s and 4 s apart", backing_off, timeout=40)
        seen = retries(env, "guarded")
        assert [d for _, d in seen] == sorted(d for _, d in seen), f"delays only grow: {seen}"
    finally:
        plane.kubectl("delete", "-f", str(policy), "--ignore-not-found")
    lifted = env.wait_for(
        "model",
        "guarded",
        "Ready once the policy is gone",
        lambda m: current_and(m, "Ready", "True"),
    )
    assert condition(lifted, "Degraded")["status"] == "False"


def fetch_args(deployment: dict[str, Any]) -> list[str]:
    (fetch,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert fetch["name"] == "fetch-artifact"
    return list(fetch["args"])


def test_an_unpinned_artifact_is_pinned_on_first_sight_and_new_bytes_are_refused(
    env: Env,
) -> None:
    """Issue 13 #1 on a cluster: a Model that reaches the operator with an unpinned https
    artifact (as GitOps or ``kubectl apply`` send it) has its revision pinned to the sha256 its
    first pod fetched (``status.revisions[].digest``), every later pod verifies that digest, and
    a pod that fetched other bytes is refused and shown, with no new revision and no traffic
    moved.

    Simulated, because no container runs on kwok: what the fetch init container reports. kwok
    finishes it with the value of its ``KWOK_TERMINATION_MESSAGE`` variable as its termination
    message (kwok-stages.yaml), as a kubelet reports what the real fetch writes to
    ``/dev/termination-log`` (that it writes it, and refuses other bytes once pinned, runs for
    real in tests/unit/test_artifact_pins.py); and the restarted pod whose fetch found other
    bytes is a pod status this test writes as a kubelet would. The operator, the chart's RBAC,
    the Deployment controller and the apiserver are real.
    """
    name = "sighted"
    v1 = hashlib.sha256(b"weights v1").hexdigest()
    v2 = hashlib.sha256(b"weights v2").hexdigest()
    said = json.dumps({"sha256": v1})
    spec = MODEL.format(name=name, batch=64) + f"  env: {{KWOK_TERMINATION_MESSAGE: '{said}'}}\n"
    env.apply(spec)
    (doc,) = load_text(spec).documents
    revision = revision_id(doc.resource)  # the spec's alone: the pin does not change it

    def pinned(m: dict[str, Any]) -> bool:
        revisions = (m.get("status") or {}).get("revisions") or []
        return current_and(m, "Ready", "True") and [
            (r["name"], r.get("digest"), r.get("readyReplicas")) for r in revisions
        ] == [(revision, v1, 1)]

    env.wait_for("model", name, "pinned to what its first pod fetched, and Ready", pinned)
    deployment = env.get("deployment", f"{name}-{revision}")
    assert fetch_args(deployment)[-4:] == ["--report", "/dev/termination-log", "--sha256", v1]
    labels = deployment["spec"]["selector"]["matchLabels"]
    selector = ",".join(f"{k}={v}" for k, v in labels.items())

    def verifying_pod() -> dict[str, Any] | None:
        for pod in env.items("pods", selector):
            ready = any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in pod["status"].get("conditions") or []
            )
            (fetch,) = pod["spec"]["initContainers"]
            if (
                ready
                and "--sha256" in fetch["args"]
                and not pod["metadata"].get("deletionTimestamp")
            ):
                return pod
        return None

    pod = env.wait("a ready pod whose fetch verifies the pin", verifying_pod)
    # It restarts, and the URL now serves other bytes: its fetch refuses them.
    (fetch_status,) = pod["status"]["initContainerStatuses"]
    refused = {"error": "new bytes", "expected": v1, "found": v2}
    fetch_status.update(
        ready=False,
        restartCount=1,
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        lastState={"terminated": {
            "exitCode": 2, "reason": "Error", "message": json.dumps(refused),
            "startedAt": "2026-11-30T00:00:00Z", "finishedAt": "2026-11-30T00:00:01Z",
        }},
    )  # fmt: skip
    conditions = [
        {**c, "status": "False"} if c["type"] in ("Ready", "ContainersReady", "Initialized") else c
        for c in pod["status"]["conditions"]
    ]
    env.kubectl(
        "patch", "pod", pod["metadata"]["name"], "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {
            "conditions": conditions, "initContainerStatuses": [fetch_status],
        }}),
    )  # fmt: skip
    changed = env.wait_for(
        "model",
        name,
        "Degraded: ArtifactChanged",
        lambda m: condition(m, "Degraded").get("reason") == "ArtifactChanged",
    )
    message = condition(changed, "Degraded")["message"]
    uri = "https://models.example.com/digits.onnx"
    assert f"pod {pod['metadata']['name']} fetched {uri}" in message
    assert f"with sha256 {v2}, but the revision is pinned to sha256 {v1}" in message
    assert "kaip apply or kaip deploy pins them" in message
    assert [(r["name"], r.get("digest")) for r in changed["status"]["revisions"]] == [
        (revision, v1)
    ], "no new revision, the pin kept"
    assert fetch_args(env.get("deployment", f"{name}-{revision}"))[-1] == v1
    env.kubectl("delete", "model", name, "--wait=false")


def test_the_operator_runs_on_a_pods_service_account(env: Env) -> None:
    if not can_run_as_a_pod():
        pytest.fail(
            "running the operator as in a pod needs a private mount namespace: root, or "
            "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)",
            pytrace=False,
        )
    assert f"on {env.plane.server} (in-cluster)" in env.operator.text()
    assert "--kubeconfig" not in env.operator.args


PREFIX_AFFINITY_MODEL = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: chat}
spec:
  owner: llm
  artifact: {uri: https://models.example.com/digits.onnx, format: onnx}
  resources: {cpu: 100m, memory: 128Mi}
  scaling: {minReplicas: 1, maxReplicas: 1}
  serve: {protocols: [openai, oip-v2], routing: prefix-affinity}
"""


def install_inference_pool_crd(env: Env) -> None:
    crd = module_dir(*INFERENCE_MODULE) / INFERENCE_CRD
    env.plane.kubectl("apply", "--server-side", "-f", str(crd))
    env.plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/inferencepools.inference.networking.k8s.io",
    )  # fmt: skip


def test_a_prefix_affinity_model_gets_its_inference_pool_and_picker_from_the_operator(
    env: Env,
) -> None:
    """Issue 17 #5 on a cluster: the chart's RBAC lets the operator create the pool and grant
    the picker's Role (the apiserver refuses a Role granting what its creator lacks)."""
    install_inference_pool_crd(env)
    env.apply(PREFIX_AFFINITY_MODEL)
    model = env.wait_for("model", "chat", "Ready", lambda m: current_and(m, "Ready", "True"))
    uid = model["metadata"]["uid"]
    assert owned_by(env.items("inferencepools.inference.networking.k8s.io"), uid) == ["chat"]
    assert owned_by(env.items("roles"), uid) == ["chat-epp"]
    assert owned_by(env.items("rolebindings"), uid) == ["chat-epp"]
    assert "chat-epp" in owned_by(env.items("deployments"), uid)
    pool = env.get("inferencepools.inference.networking.k8s.io", "chat")
    assert pool["spec"]["endpointPickerRef"]["name"] == "chat-epp"
    env.kubectl("delete", "model", "chat", "--wait=true", "--timeout=30s")


PAUSED_MODEL = MODEL.replace("- {{weight: 60, pauseSeconds: 2}}", "- {{weight: 60, pause: {{}}}}")
# Held at 60 % until `kaip rollout promote`, so the weights there are read while they hold.
PREFIX_AFFINITY_CANARY = PAUSED_MODEL.replace(
    "serve: {{", "serve: {{protocols: [openai, oip-v2], routing: prefix-affinity, ", 1
)


def pool_weights(env: Env, name: str) -> list[tuple[str, str, int]]:
    """(kind, name, weight) of each backendRef of the Model's inference route."""
    route = env.get("httproute", f"{name}-inference")
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "inference",
         "namespace": "gateways"}
    ]  # fmt: skip
    refs = route["spec"]["rules"][0]["backendRefs"]
    return [(b["kind"], b["name"], b["weight"]) for b in refs]


def pool_selects(env: Env, pool: str) -> str | None:
    """The revision label ``pool`` selects pods by (None: every revision's pods)."""
    selector = env.get("inferencepools.inference.networking.k8s.io", pool)["spec"]["selector"]
    revision: str | None = selector["matchLabels"].get("kaip.dev/revision")
    return revision


def test_a_prefix_affinity_canary_holds_its_weight_on_the_route_over_the_inference_pools(
    env: Env,
) -> None:
    """Issue 17 #5: with a Gateway set, each live revision has its own pool and picker, and the
    operator's weight changes reach the route whose backendRefs are those pools."""
    install_inference_pool_crd(env)
    healthy = RevisionMetrics(100, 0, 20.0)
    env.apply(PREFIX_AFFINITY_CANARY.format(name="talk", batch=64))
    ready = env.wait_for("model", "talk", "Ready", lambda m: current_and(m, "Ready", "True"))
    uid = ready["metadata"]["uid"]
    (first,) = live(ready)
    env.prometheus.numbers[first] = healthy
    pool = ("InferencePool", "talk")
    assert pool_weights(env, "talk") == [(*pool, 100)]
    assert pool_selects(env, "talk") is None

    env.apply(PREFIX_AFFINITY_CANARY.format(name="talk", batch=8))
    started = env.wait_for("model", "talk", "canary started", canary_step)
    second = started["status"]["rollout"]["canary"]["revision"]
    canary_pool = ("InferencePool", f"talk-{second}")
    assert pool_weights(env, "talk") == [(*pool, 80), (*canary_pool, 20)]
    assert weights(env, "talk") == [80, 20], "the Services' route moves alike"
    assert pool_selects(env, "talk") == first and pool_selects(env, f"talk-{second}") == second
    pickers = owned_by(env.items("deployments", "app.kubernetes.io/name=epp.kaip.dev"), uid)
    assert pickers == ["talk-epp", f"talk-epp-{second[:6]}"]
    env.prometheus.numbers[second] = healthy
    env.wait_for("model", "talk", "canary at step 2", lambda m: canary_step(m) == 2)
    assert pool_weights(env, "talk") == [(*pool, 40), (*canary_pool, 60)]
    promoted = kaip_rollout(env, "promote", "talk")  # the pause at 60 % holds until this
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr

    env.wait_for(
        "model", "talk", "canary promoted",
        lambda m: current_and(m, "Ready", "True") and live(m) == [second],
    )  # fmt: skip
    assert pool_weights(env, "talk") == [(*pool, 100)]
    assert pool_selects(env, "talk") is None, "one revision: the pool selects the Model's pods"
    env.wait(
        "the canary's pool and picker removed",
        lambda: (
            owned_by(env.items("inferencepools.inference.networking.k8s.io"), uid) == ["talk"]
            and owned_by(env.items("deployments", "app.kubernetes.io/name=epp.kaip.dev"), uid)
            == ["talk-epp"]
        ),
    )
    env.kubectl("delete", "model", "talk", "--wait=true", "--timeout=30s")


def test_the_operator_was_never_forbidden(env: Env) -> None:
    log = env.operator.text()
    assert "Traceback" not in log, log[-4000:]
    # The admission policy above says "forbidden" too (with a 403); RBAC never may. A starting
    # apiserver answers before its RBAC caches are filled, so it may deny for a moment then.

    def restarting(line: str) -> bool:
        try:
            at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        except ValueError:
            return False
        return any(start <= at <= end for start, end in env.restarts)

    denied = [
        line
        for line in log.splitlines()
        if (" 403" in line or "forbidden" in line.lower())
        and "ValidatingAdmissionPolicy 'freeze-guarded'" not in line
        and not restarting(line)
    ]
    assert not denied, "\n".join(denied[-20:])


def kaip_rollout(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    """``kaip rollout ARGS -n NS --kubeconfig ADMIN``, as a person with kubectl rights runs it."""
    return subprocess.run(
        [sys.executable, "-m", "kaip.cli", "rollout", *args, "-n", env.namespace,
         "--kubeconfig", str(env.plane.kubeconfig)],
        capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def test_promote_at_a_pause_abort_and_undo_through_the_cli_act_on_the_operator(env: Env) -> None:
    healthy = RevisionMetrics(100, 0, 20.0)
    env.apply(PAUSED_MODEL.format(name="gate", batch=64))
    stable = env.wait_for("model", "gate", "Ready", lambda m: current_and(m, "Ready", "True"))
    first = stable["status"]["rollout"]["stable"]["revision"]
    env.prometheus.numbers[first] = healthy
    idle = kaip_rollout(env, "promote", "gate")
    assert idle.returncode == 1 and "has no rollout in progress" in idle.stderr, idle.stderr

    # a manual pause holds until promote, which releases it; the canary then goes on to 100%
    env.apply(PAUSED_MODEL.format(name="gate", batch=8))
    started = env.wait_for("model", "gate", "canary started", canary_step)
    second = started["status"]["rollout"]["canary"]["revision"]
    env.prometheus.numbers[second] = healthy

    def paused(m: dict[str, Any]) -> bool:
        decision = m["status"]["rollout"].get("lastDecision") or {}
        return canary_step(m) == 2 and "waiting for `kaip rollout promote`" in decision.get(
            "reason", ""
        )

    env.wait_for("model", "gate", "held at the pause", paused)
    status = kaip_rollout(env, "status", "gate")
    assert status.returncode == 0, status.stderr
    assert f"Model gate: {first} -> {second}, step 2/3 at 60%: hold: paused at 60%" in status.stdout
    promoted = kaip_rollout(env, "promote", "gate")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    # what the operator decided since: its advance, or already a later step's hold
    assert "pause released by " in promoted.stdout, promoted.stdout
    watched = kaip_rollout(env, "status", "gate", "--watch", "--timeout", "3m")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert f"{second} promoted" in watched.stdout
    assert events(env, "gate")[-3:] == ["CanaryAdvanced", "CanaryAdvanced", "CanaryPromoted"]
    assert weights(env, "gate") == [100]

    # abort: the next canary ends at once, stable keeps everything; --watch exits 5
    env.apply(PAUSED_MODEL.format(name="gate", batch=4))
    third = env.wait_for("model", "gate", "canary started", canary_step)
    third_rev = third["status"]["rollout"]["canary"]["revision"]
    aborted = kaip_rollout(env, "abort", "gate")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert f"rollout of {third_rev} aborted by " in aborted.stdout
    assert f"stable stays {second}" in aborted.stdout
    judged = kaip_rollout(env, "status", "gate", "--watch")
    assert judged.returncode == 5, judged.stdout + judged.stderr
    assert "CanaryAborted" in events(env, "gate")

    # undo: the spec of the revision before stable comes back and rolls out as a canary
    env.apply(PAUSED_MODEL.format(name="gate", batch=8))  # the stable spec again: settled
    env.wait_for("model", "gate", "settled", lambda m: canary_step(m) == 0)
    undone = kaip_rollout(env, "undo", "gate")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert f"undo: Model gate: rolling out revision {first} over {second}" in undone.stdout
    back = env.wait_for("model", "gate", "canary of the old revision", canary_step)
    assert back["status"]["rollout"]["canary"]["revision"] == first
    assert back["spec"]["serve"]["batching"]["maxBatchSize"] == 64
    full = kaip_rollout(env, "promote", "gate", "--full")
    assert full.returncode == 0, full.stdout + full.stderr
    assert f"promoted to revision {first}" in full.stdout
    env.wait_for("model", "gate", "undone", lambda m: live(m) == [first])


GATED = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {{name: gated}}
spec:
  owner: ml
  artifact: {{uri: https://models.example.com/digits.onnx, format: onnx}}
  resources: {{cpu: 100m, memory: 128Mi}}
  scaling: {{minReplicas: 1, maxReplicas: 1}}
  serve: {{batching: {{maxBatchSize: {batch}}}}}
  rollout:
    steps: [{{weight: 50, pauseSeconds: 1}}, {{weight: 100, pauseSeconds: 1}}]
    gates: {{maxErrorRate: 1, minRequests: 10}}
    analysis:
      intervalSeconds: 1
      prometheus: {prometheus}
      queries:
        - name: errors
          query: >-
            sum(increase(kaip_requests_total{{revision="{{{{revision}}}}",status=~"5.."}}[1m]))
          max: 5
      webhooks:
        - {{name: vote, url: "{hook}/vote", timeoutSeconds: 5}}
        - {{name: smoke, type: pre-rollout, url: "{hook}/pre", timeoutSeconds: 5}}
        - {{name: report, type: post-rollout, url: "{hook}/post", timeoutSeconds: 5}}
    notifications: [{{url: "{hook}/ce", format: cloudevents}}]
"""


def test_a_promql_gate_and_a_webhook_gate_each_roll_back_a_canary_all_moves_notified(
    env: Env,
) -> None:
    """Issue 13 must-show: the operator's analysis gates and notifications (the built-in gates
    are off: maxErrorRate 1), and Flagger-style pre-/post-rollout hooks (#4): the pre-rollout
    webhook is asked once per new revision before any step's vote, and its refusal rolls the
    revision back before any traffic; the post-rollout webhook is told every outcome. The
    Prometheus is the contract tier's double; the webhooks and the notification receiver a real
    HTTP server on loopback."""
    with webhook_receiver() as hook:

        def spec(batch: int) -> str:
            return GATED.format(batch=batch, prometheus=env.prometheus.url, hook=hook.url)

        env.apply(spec(64))
        ready = env.wait_for("model", "gated", "Ready", lambda m: current_and(m, "Ready", "True"))
        stable = ready["status"]["rollout"]["stable"]["revision"]

        def rolled_back(batch: int, numbers: RevisionMetrics) -> tuple[str, str]:
            (doc,) = load_text(spec(batch)).documents
            canary = revision_id(doc.resource)  # known before the operator starts it
            env.prometheus.numbers[canary] = numbers
            env.prometheus.numbers[stable] = RevisionMetrics(40, 0, 20.0)
            env.apply(spec(batch))
            rolled = env.wait_for(
                "model", "gated", "rolled back",
                lambda m: (m["status"].get("rollout") or {}).get("rolledBack", {}).get("revision")
                == canary,
            )  # fmt: skip
            return canary, rolled["status"]["rollout"]["rolledBack"]["reason"]

        failing, why = rolled_back(8, RevisionMetrics(40, 20, 20.0))  # 20 errors: the query fails
        assert why == "query errors: 20 > max 5"
        hook.statuses, hook.answer = {"/vote": 503}, "p99 too high"
        voted, why = rolled_back(16, RevisionMetrics(40, 0, 20.0))  # no error: the webhook says no
        assert why == "webhook vote: HTTP 503: p99 too high"
        assert weights(env, "gated") == [100]
        gated = env.get("model", "gated")
        evidence = gated["status"]["rollout"]["lastDecision"]["evidence"]["checks"]
        assert [(c["check"], c["status"]) for c in evidence] == [
            ("query errors", "pass"), ("webhook vote", "fail"),
        ]  # fmt: skip
        votes = [b for b in hook.bodies("/vote") if b["revision"] == voted]
        assert votes and votes[0]["namespace"] == env.namespace
        assert votes[0]["target"] == "kubernetes" and votes[0]["stableRevision"] == stable

        expected = [
            ("started", failing), ("rolled_back", failing), ("started", voted),
            ("rolled_back", voted),
        ]  # fmt: skip
        env.wait("the notifications", lambda: len(hook.bodies("/ce")) >= len(expected))
        told = [(b["type"].rsplit(".", 1)[1], b["subject"]) for b in hook.bodies("/ce")]
        assert told == expected
        first = hook.bodies("/ce")[0]
        assert first["source"] == f"/apis/kaip.dev/v1alpha1/namespaces/{env.namespace}/models/gated"
        assert first["data"]["fromRevision"] == stable

        # pre-rollout: asked once per new revision, before any step's vote on it
        arrived = [
            (path, body["revision"])
            for path, _, body in hook.received()
            if path in ("/pre", "/vote")
        ]
        for revision in (failing, voted):
            assert arrived.count(("/pre", revision)) == 1, arrived
            assert arrived.index(("/pre", revision)) < arrived.index(("/vote", revision))
        pre = hook.bodies("/pre")[0]
        assert (pre["phase"], pre["check"], pre["weight"], pre["namespace"]) == (
            "pre-rollout", "smoke", 0, env.namespace,
        )  # fmt: skip
        # ... and its refusal rolls the next one back before any step is voted on
        hook.statuses["/pre"], hook.answer = 409, "smoke test failed"
        refused, why = rolled_back(24, RevisionMetrics(40, 0, 20.0))
        assert why == "pre-rollout webhook smoke: HTTP 409: smoke test failed"
        assert all(b["revision"] != refused for b in hook.bodies("/vote")), "no step voted"
        assert weights(env, "gated") == [100]
        # post-rollout: told each outcome, in order, with the verdict's reason
        env.wait("the post-rollout hooks", lambda: len(hook.bodies("/post")) >= 3)
        post = hook.bodies("/post")
        assert [(b["revision"], b["outcome"], b["phase"]) for b in post] == [
            (failing, "rolled_back", "post-rollout"), (voted, "rolled_back", "post-rollout"),
            (refused, "rolled_back", "post-rollout"),
        ]  # fmt: skip
        assert "query errors: 20 > max 5" in post[0]["reason"]
        assert "HTTP 409: smoke test failed" in post[2]["reason"]

"""The portal on a cluster (issue 15): ``kaip portal`` against a real kube-apiserver.

The chart, rendered by a real helm with ``portal.enabled=true``, passes a server-side dry run
and is applied; the portal process runs with the token of the chart's portal ServiceAccount, so
it has exactly the chart's RBAC. Three Models are created and their ``status`` written as the
operator writes it (one with a canary in flight), with an Event of the operator's for the canary
(no operator runs: the statuses are what the portal reads). Users are ServiceAccounts and a
static-token user, each with its own RBAC: the API lists the Models paged for a valid token
(TokenReview), refuses a bogus one (401) and a user who may not list Models (403); promote
needs ``patch`` on that Model (SubjectAccessReview): a viewer gets 403, a deployer's promote
writes the operator's command annotation, naming the deployer. The portal is given a real
Prometheus (Debian's) that scrapes a real model server serving "gamma" (``kaip serve`` on
loopback, with the ``namespace`` label a cluster's scrape config adds): the catalog shows
gamma's traffic and its page draws charts from it.
"""

from __future__ import annotations

import html
import ipaddress
import json
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from kube_harness import ControlPlane, free_port, write_kubeconfig

from kaip.kube.operator.canary import COMMAND_ANNOTATION

REPO = Path(__file__).resolve().parents[2]
RELEASE = "portaltest"
PORTAL_ACCOUNT = "portaltest-kaip-operator-portal"
OWNERS = {"alpha": "team-a", "beta": "team-a", "gamma": "team-b"}


@dataclass
class Portal:
    url: str
    namespace: str
    tokens: dict[str, str]
    plane: ControlPlane
    gamma_url: str
    prometheus_url: str
    """A real model server serving gamma, scraped by the portal's Prometheus."""

    def get(self, path: str, who: str | None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.get(self.url + path, params=params, headers=headers, trust_env=False)

    def post(self, path: str, who: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return httpx.post(self.url + path, json=body, headers=headers, trust_env=False, timeout=60)


def _model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kaip.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {
            "owner": OWNERS[name],
            "artifact": {"uri": "s3://models/digits/model.joblib", "format": "sklearn",
                         "sha256": "0" * 64},
            "rollout": {"steps": [{"weight": 10, "pause": {}}, {"weight": 100}]},
        },
    }  # fmt: skip


def _status(name: str, now: datetime) -> dict[str, Any]:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    ready = [{"type": "Ready", "status": "True", "lastTransitionTime": stamp,
              "reason": "ReplicasReady", "message": "ready", "observedGeneration": 1}]  # fmt: skip
    revisions = [{"name": "abc123", "weight": 100, "replicas": 2, "readyReplicas": 2}]
    rollout: dict[str, Any] = {"stable": {"revision": "abc123", "spec": {"owner": OWNERS[name]}}}
    if name == "alpha":
        revisions = [
            {"name": "abc123", "weight": 90, "replicas": 2, "readyReplicas": 2},
            {"name": "def456", "weight": 10, "replicas": 1, "readyReplicas": 1},
        ]
        rollout["canary"] = {"revision": "def456", "step": 0, "stepStartedAt": stamp}
        rollout["lastDecision"] = {
            "action": "hold", "reason": "paused at 10%: waiting for promote",
            "revision": "def456", "at": stamp,
            "evidence": {"step": 1, "canary": {"requests": 40, "errors": 0, "errorRate": 0}},
        }  # fmt: skip
    return {"observedGeneration": 1, "url": f"http://{name}.ns.svc:8080", "conditions": ready,
            "revisions": revisions, "rollout": rollout}  # fmt: skip


def _apply_chart(plane: ControlPlane, helm: Path, work: Path, namespace: str) -> str:
    """The chart with the portal for ``namespace``: dry-run on the server, then applied."""
    release_ns = f"{RELEASE}-{namespace}"
    plane.kubectl("create", "namespace", release_ns)
    rendered = subprocess.run(
        [str(helm), "template", RELEASE, str(REPO / "charts" / "kaip"), "--include-crds",
         "--namespace", release_ns, "--set", f"watchNamespaces={{{namespace}}}",
         "--set", "portal.enabled=true"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    chart = work / "chart.yaml"
    chart.write_text(rendered.stdout)
    crds = [
        d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"].endswith("Definition")
    ]
    crd_file = work / "crds.yaml"
    crd_file.write_text(yaml.safe_dump_all(crds))
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd_file))
    for crd in crds:
        name = crd["metadata"]["name"]
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
    dry = plane.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server",
                        "-f", str(chart))  # fmt: skip
    assert f"deployment.apps/{PORTAL_ACCOUNT} serverside-applied (server dry run)" in dry, dry
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(chart))
    return release_ns


def _account(plane: ControlPlane, namespace: str, name: str, verbs: list[str]) -> str:
    """A ServiceAccount in ``namespace`` that may ``verbs`` Models there; its token."""
    plane.kubectl("create", "serviceaccount", name, "-n", namespace)
    if verbs:
        plane.kubectl("create", "role", name, "-n", namespace, f"--verb={','.join(verbs)}",
                      "--resource=models.kaip.dev")  # fmt: skip
        plane.kubectl("create", "rolebinding", name, "-n", namespace, f"--role={name}",
                      f"--serviceaccount={namespace}:{name}")  # fmt: skip
    return plane.kubectl("create", "token", name, "-n", namespace, "--duration=1h").strip()


PROMETHEUS = Path("/usr/bin/prometheus")
GAMMA = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: gamma}
spec:
  owner: team-b
  artifact: {uri: tiny_lm.py, format: python, entrypoint: "tiny_lm:TinyLM", trust: true}
"""


def _until(ready: Any, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120  # a bound on a hang, not a timing check
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if ready():
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{what}: {log.read_text()[-2000:]}"
        time.sleep(0.5)


@contextmanager
def _gamma_scraped(work: Path, namespace: str) -> Iterator[tuple[str, str]]:
    """A real model server serving gamma (on every interface: the API server's service proxy
    refuses loopback addresses) and a real Prometheus scraping it every second, with the
    namespace label; yields (the model server's URL, Prometheus's URL)."""
    assert PROMETHEUS.exists(), f"{PROMETHEUS} is missing: run tools/setup.sh (prometheus)"
    spec = work / "gamma"
    spec.mkdir()
    (spec / "kaip.yaml").write_text(GAMMA)
    (spec / "tiny_lm.py").write_bytes((REPO / "examples" / "tiny-lm" / "model.py").read_bytes())
    serve_port, prom_port = free_port(), free_port()
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [{
        "job_name": "kaip-replicas", "scrape_timeout": "900ms",
        "static_configs": [{"targets": [f"127.0.0.1:{serve_port}"],
                            "labels": {"namespace": namespace}}]}]}  # fmt: skip
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    logs = work / "serve.log", work / "prometheus.log"
    with logs[0].open("wb") as out, logs[1].open("wb") as prom_out:
        server = subprocess.Popen(
            [sys.executable, "-m", "kaip.cli", "serve", str(spec), "--port", str(serve_port),
             "--host", "0.0.0.0"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        prometheus = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
             "--log.level=warn"],
            stdout=prom_out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    served, prom = f"http://127.0.0.1:{serve_port}", f"http://127.0.0.1:{prom_port}"
    try:
        _until(lambda: httpx.get(served + "/v2/health/ready", trust_env=False).is_success,
               "kaip serve", server, logs[0])  # fmt: skip
        _until(lambda: httpx.get(prom + "/-/ready", trust_env=False).is_success,
               "Prometheus", prometheus, logs[1])  # fmt: skip
        yield served, prom
    finally:
        for process in (server, prometheus):
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def portal(
    kube_api: ControlPlane, helm: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Portal]:
    plane = kube_api
    work = tmp_path_factory.mktemp("portal-kube")
    namespace = f"portal-{uuid.uuid4().hex[:6]}"
    plane.kubectl("create", "namespace", namespace)
    release_ns = _apply_chart(plane, helm, work, namespace)
    now = datetime.now(UTC)
    for name in OWNERS:
        path = work / f"{name}.json"
        path.write_text(json.dumps(_model(name)))
        plane.kubectl("apply", "-n", namespace, "-f", str(path))
        plane.kubectl("patch", "model", name, "-n", namespace, "--subresource=status",
                      "--type=merge", "-p", json.dumps({"status": _status(name, now)}))  # fmt: skip
    started = (now - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "alpha.canary", "namespace": namespace},
        "involvedObject": {"apiVersion": "kaip.dev/v1alpha1", "kind": "Model", "name": "alpha",
                           "namespace": namespace},
        "reason": "CanaryStarted", "message": "revision def456: canary def456 at 10%",
        "type": "Normal", "source": {"component": "kaip-operator"},
        "firstTimestamp": started, "lastTimestamp": started, "count": 1,
    }  # fmt: skip
    (work / "event.json").write_text(json.dumps(event))
    plane.kubectl("create", "-f", str(work / "event.json"))
    token = plane.kubectl("create", "token", PORTAL_ACCOUNT, "-n", release_ns).strip()
    kubeconfig = work / "portal.kubeconfig"
    write_kubeconfig(kubeconfig, plane.server, plane.ca_file, PORTAL_ACCOUNT, token)
    tokens = {
        "deployer": _account(plane, namespace, "deployer", ["get", "list", "patch"]),
        "viewer": _account(plane, namespace, "viewer", ["get", "list"]),
        "nobody": plane.token("nobody"),
        "bogus": "not-a-token-" + uuid.uuid4().hex,
    }
    port = free_port()
    scraped = _gamma_scraped(work, namespace)
    served, prom = scraped.__enter__()
    log = (work / "portal.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "kaip.cli", "portal", "--kubeconfig", str(kubeconfig),
         "-n", namespace, "--port", str(port), "--prometheus", prom],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a bound on a hang, not a timing check
        while True:
            assert process.poll() is None, (work / "portal.log").read_text()
            try:
                if httpx.get(url + "/login", trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (work / "portal.log").read_text()
            time.sleep(0.5)
        yield Portal(url, namespace, tokens, plane, served, prom)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        scraped.__exit__(None, None, None)
    text = (work / "portal.log").read_text()
    assert all(t not in text for t in tokens.values()), "a token was logged"


def test_the_api_lists_the_models_paged_for_a_valid_token(portal: Portal) -> None:
    first = portal.get("/api/v1/resources", "viewer", per_page=2)
    assert first.status_code == 200, first.text
    page = first.json()
    assert (page["total"], page["pages"], page["owners"]) == (3, 2, ["team-a", "team-b"])
    assert [r["name"] for r in page["items"]] == ["alpha", "beta"]
    alpha = page["items"][0]
    assert (alpha["kind"], alpha["owner"], alpha["stable"], alpha["canary"]) == (
        "Model", "team-a", "abc123", "def456"
    )  # fmt: skip
    assert alpha["weights"] == {"abc123": 90, "def456": 10}
    assert alpha["rollout"]["paused"] and alpha["rollout"]["canary"]["requests"] == 40
    second = portal.get("/api/v1/resources", "viewer", per_page=2, page=2).json()
    assert [r["name"] for r in second["items"]] == ["gamma"]
    team_b = portal.get("/api/v1/resources", "viewer", owner="team-b").json()
    assert [r["name"] for r in team_b["items"]] == ["gamma"]


def test_tokens_are_checked_by_the_clusters_token_review(portal: Portal) -> None:
    assert portal.get("/api/v1/resources", None).status_code == 401
    assert portal.get("/api/v1/resources", "bogus").status_code == 401
    refused = portal.get("/api/v1/resources", "nobody")
    assert refused.status_code == 403, refused.text
    assert "nobody may not read namespace" in refused.json()["error"]
    assert "list models.kaip.dev" in refused.json()["error"]


def test_promote_needs_patch_on_that_model(portal: Portal) -> None:
    denied = portal.post("/api/v1/resources/alpha/promote", "viewer")
    assert denied.status_code == 403, denied.text
    assert "may not promote Model alpha" in denied.json()["error"]
    assert "patch models.kaip.dev/alpha" in denied.json()["error"]
    annotations = _annotations(portal, "alpha")
    assert COMMAND_ANNOTATION not in annotations
    done = portal.post("/api/v1/resources/alpha/promote", "deployer")
    assert done.status_code == 200, done.text
    assert "promote sent to the operator for revision def456" in done.json()["message"]
    command = json.loads(_annotations(portal, "alpha")[COMMAND_ANNOTATION])
    assert (command["action"], command["revision"]) == ("promote", "def456")
    assert command["by"] == f"system:serviceaccount:{portal.namespace}:deployer"
    idle = portal.post("/api/v1/resources/beta/promote", "deployer")
    assert idle.status_code == 409 and "no rollout in progress" in idle.json()["error"]
    missing = portal.post("/api/v1/resources/nope/abort", "deployer")
    assert missing.status_code == 404


def test_the_pages_and_delivery_come_from_the_cluster(portal: Portal) -> None:
    with httpx.Client(base_url=portal.url, trust_env=False, timeout=60) as browser:
        login = browser.post("/login", data={"token": portal.tokens["viewer"]})
        assert login.status_code == 303, login.text
        catalog = browser.get("/")
        assert catalog.status_code == 200
        assert '<a href="/resources/gamma">gamma</a>' in catalog.text
        page = browser.get("/resources/alpha")
        assert page.status_code == 200
        assert "Rolling out rev abc123 → rev def456" in page.text
        assert "waiting for promote" in page.text
        assert "canary def456 at 10%" in page.text  # the operator's Event, in the timeline
        bad = browser.post("/login", data={"token": portal.tokens["bogus"]})
        assert bad.status_code == 401 and "TokenReview" in bad.text
    dora = portal.get("/api/v1/dora", "viewer", days=1)
    assert dora.status_code == 200, dora.text
    numbers = dora.json()
    # Three first revisions (when each Model was made) and alpha's canary start.
    assert numbers["deployment_frequency"]["deployments"] == 4
    assert numbers["change_fail_rate"]["decided"] == 3


def test_a_resource_shows_its_manifest_and_how_to_reach_it(portal: Portal) -> None:
    answer = portal.get("/api/v1/resources/gamma", "viewer")
    assert answer.status_code == 200, answer.text
    about = answer.json()
    manifest = about["manifest"]
    assert (manifest["kind"], manifest["metadata"]) == (
        "Model", {"name": "gamma", "namespace": portal.namespace}
    )  # fmt: skip
    declared = _model("gamma")["spec"]
    assert manifest["spec"]["owner"] == declared["owner"]
    # As stored: the CRD's defaults filled in (trust), no status or managed fields beside it.
    assert manifest["spec"]["artifact"] == {**declared["artifact"], "trust": False}
    assert "status" not in manifest and "managedFields" not in manifest["metadata"]
    infer = "POST http://gamma.ns.svc:8080/v2/models/gamma/infer"
    assert {"what": "OIP v2 inference", "request": infer} in about["endpoints"]
    assert portal.get("/api/v1/resources/nope", "viewer").status_code == 404
    page = portal.get("/resources/gamma", "viewer")
    assert f"kubectl -n {portal.namespace} port-forward svc/gamma 8000:8080" in page.text
    assert 'data-snippet="curl"' in page.text and 'id="spec-yaml"' in page.text
    follow = f"kubectl logs -n {portal.namespace} -l app.kubernetes.io/name=gamma -f --prefix"
    assert follow in page.text  # replica logs: not read on a cluster, the command that does


def test_the_catalog_and_charts_show_traffic_from_prometheus(portal: Portal) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}

    def infer() -> None:
        answer = httpx.post(f"{portal.gamma_url}/v2/models/gamma/infer", json=body,
                            trust_env=False, timeout=60)  # fmt: skip
        assert answer.status_code == 200, answer.text

    # A counter's first sample is no increase: let Prometheus see the series before the rest,
    # or all 21 can land before its first scrape and rate() stays 0 (the cold run of 2026-11-30).
    infer()
    deadline = time.monotonic() + 120  # scraped every second; a bound on a hang
    while not _scraped(portal.prometheus_url, portal.namespace):
        assert time.monotonic() < deadline, "Prometheus never scraped gamma's first request"
        time.sleep(1)
    for _ in range(19):
        infer()
    failed = httpx.post(f"{portal.gamma_url}/v2/models/gamma/infer", json={"inputs": "no"},
                        trust_env=False, timeout=60)  # fmt: skip
    assert failed.status_code == 400

    def gamma() -> dict[str, Any]:
        page = portal.get("/api/v1/resources", "viewer", owner="team-b").json()
        (row,) = [r for r in page["items"] if r["name"] == "gamma"]
        return dict(row["traffic"] or {})

    deadline = time.monotonic() + 120  # scraped every second; a bound on a hang
    while (gamma().get("requests") or 0) < 21:
        assert time.monotonic() < deadline, gamma()
        time.sleep(1)
    traffic = gamma()
    assert traffic["requests"] >= 21 and traffic["rate"] > 0
    assert traffic["p99_le_s"] is not None and traffic["p99_le_s"] > 0
    assert traffic["error_pct"] == 0  # a 400 is the client's error, not the server's
    alpha = portal.get("/api/v1/resources", "viewer", q="alpha").json()["items"][0]
    assert alpha["traffic"] is None  # nothing serves alpha: Prometheus has no series of it
    page = portal.get("/resources/gamma", "viewer").text
    assert 'data-chart="rate"' in page and ("<polyline" in page or "<circle" in page)

    # Cost and energy columns: kaip.accounting over the replicas' windows, as kaip cost reads them
    while gamma().get("cost_per_1k_usd") is None:
        assert time.monotonic() < deadline + 60, gamma()
        time.sleep(1)
    shown = gamma()
    assert shown["cost_method"] == "estimated" and shown["joules_per_request"] > 0
    assert shown["cost_until"] <= time.time()
    report = subprocess.run(
        [sys.executable, "-m", "kaip.cli", "cost", "--prometheus", portal.prometheus_url,
         "-n", portal.namespace, "--since", "1h", "--until", str(shown["cost_until"]),
         "-o", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    answer = json.loads(report.stdout)
    assert answer["until"] == shown["cost_until"]
    (row,) = [r for r in answer["rows"] if r["resource"] == "gamma"]
    # The same kernel, prices and window (its end as the portal asked Prometheus). Over windows
    # seconds apart the idling replica's share moved these apart by 3x once (2026-12-01); what
    # may still differ is a scrape stamped before that end but stored after the portal asked.
    assert shown["cost_per_1k_usd"] == pytest.approx(row["cost_per_1k_requests_usd"], rel=0.05)
    assert shown["joules_per_request"] == pytest.approx(row["joules_per_request"], rel=0.05)
    catalog = portal.get("/", "viewer", owner="team-b").text
    assert 'title="estimated"' in catalog and "Traffic is read from Prometheus" in catalog


def _host_address() -> str:
    """This machine's first IPv4 address that is neither loopback nor link-local."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            ip = ipaddress.ip_address(address.address) if address.family == socket.AF_INET else None
            if ip is not None and not (ip.is_loopback or ip.is_link_local):
                return str(ip)
    raise AssertionError("the playground test needs a non-loopback IPv4 address on this machine")


def _service_of_gamma(plane: ControlPlane, work: Path, namespace: str, port: int) -> None:
    """gamma's Service as the operator would make it (port 8080, its status.url's), its
    Endpoints at the real model server on this machine, and the Pod they name: the API server's
    service proxy goes only to an address of a Pod the Endpoints name. No kubelet runs here, so
    the Pod is bound to no node and its status (the machine's address) is written by the test;
    the pod garbage collector leaves such a Pod 40 s, and the test needs a few."""
    address = _host_address()
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gamma-0", "namespace": namespace, "labels": {"app": "gamma"}},
        "spec": {"nodeName": "no-node-here", "containers": [{"name": "model", "image": "x"}]},
    }  # fmt: skip
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "gamma", "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": port}]},
    }  # fmt: skip
    endpoints = {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "gamma", "namespace": namespace},
        "subsets": [{"addresses": [{"ip": address, "targetRef": {
                        "kind": "Pod", "name": "gamma-0", "namespace": namespace}}],
                     "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}],
    }  # fmt: skip
    for what, body in (("pod", pod), ("service", service), ("endpoints", endpoints)):
        (work / f"gamma-{what}.json").write_text(json.dumps(body))
        plane.kubectl("apply", "-f", str(work / f"gamma-{what}.json"))
    status = {"status": {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}]}}
    plane.kubectl("patch", "pod", "gamma-0", "-n", namespace, "--subresource=status",
                  "--type=merge", "-p", json.dumps(status))  # fmt: skip


def _scraped(prometheus: str, namespace: str) -> bool:
    query = f'kaip_requests_total{{namespace="{namespace}",model="gamma"}}'
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, trust_env=False)
    return answer.is_success and bool(answer.json()["data"]["result"])


def test_the_playground_reaches_the_model_through_the_api_servers_service_proxy(
    portal: Portal, tmp_path: Path
) -> None:
    _service_of_gamma(
        portal.plane, tmp_path, portal.namespace, int(portal.gamma_url.rsplit(":")[-1])
    )
    with httpx.Client(base_url=portal.url, trust_env=False, timeout=60) as browser:
        login = browser.post("/login", data={"token": portal.tokens["viewer"]})
        assert login.status_code == 303, login.text
        page = browser.get("/resources/gamma")
        assert page.status_code == 200
        shaped = re.search(r'<textarea[^>]*id="playground-body"[^>]*>([^<]*)<', page.text)
        assert shaped is not None, page.text
        asked = json.loads(html.unescape(shaped.group(1)))  # from gamma's own metadata
        assert [i["name"] for i in asked["inputs"]] == ["x"]
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        body = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
                            "data": [1, 2, 3, 4]}]}  # fmt: skip
        answer = browser.post(
            "/resources/gamma/playground",
            data={"csrf": csrf.group(1), "body": json.dumps(body)},
            headers={"Origin": portal.url},
        )
        assert answer.status_code == 200, answer.text
        status = re.search(r'id="playground-status">(\d+)<', answer.text)
        output = re.search(r'<pre id="playground-output">([^<]*)</pre>', answer.text)
        assert status is not None and output is not None, answer.text
        assert status.group(1) == "200", answer.text
        (out,) = json.loads(html.unescape(output.group(1)))["outputs"]
        assert out["data"] == [3.0, 7.0]  # TinyLM sums each row, served on this machine
        off = browser.get("/resources/alpha")  # no Service answers alpha: the page still shows
        assert off.status_code == 200


def _annotations(portal: Portal, name: str) -> dict[str, str]:
    out = portal.plane.kubectl("get", "model", name, "-n", portal.namespace, "-o", "json")
    return dict(json.loads(out)["metadata"].get("annotations") or {})


def _pod(
    namespace: str, name: str, labels: dict[str, str], status: dict[str, Any]
) -> tuple[str, str]:
    """A Pod as a Deployment of the operator's makes it, bound to no node (no kubelet runs
    here), its status written as a kubelet would; the pod garbage collector leaves it 40 s."""
    body = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": "no-node-here", "containers": [
            {"name": "model", "image": "x", "ports": [{"containerPort": 8080}]}]},
    }  # fmt: skip
    return json.dumps(body), json.dumps({"status": status})


def test_a_resource_page_lists_its_pods_and_says_why_no_log_can_be_read(
    portal: Portal, tmp_path: Path
) -> None:
    """The page of one Model lists its pods (phase, restarts, address), read with the chart's
    portal role; pods of another resource, or not kaip's, are not among them. kwok's nodes
    serve no logs, so the log stream says why and what to run (the real node shows lines:
    tests/e2e_node)."""
    ns, now = portal.namespace, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    kaip = {"app.kubernetes.io/managed-by": "kaip"}
    container = {"name": "model", "image": "x", "imageID": "", "ready": True, "restartCount": 2,
                 "state": {"running": {"startedAt": now}},
                 "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                                              "startedAt": now, "finishedAt": now}}}  # fmt: skip
    crashing = {"name": "model", "image": "x", "imageID": "", "ready": False, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                                      "message": "back-off 40s restarting"}}}  # fmt: skip
    pods = {
        "alpha-abc123-0": ({"app.kubernetes.io/name": "alpha", "kaip.dev/revision": "abc123",
                            **kaip},
                           {"phase": "Running", "podIP": "10.88.0.7",
                            "conditions": [{"type": "Ready", "status": "True"}],
                            "containerStatuses": [container]}),
        "alpha-def456-0": ({"app.kubernetes.io/name": "alpha", "kaip.dev/revision": "def456",
                            **kaip},
                           {"phase": "Running", "podIP": "10.88.0.8",
                            "conditions": [{"type": "Ready", "status": "False"}],
                            "containerStatuses": [crashing]}),
        "beta-abc123-0": ({"app.kubernetes.io/name": "beta", **kaip}, {"phase": "Running"}),
        "alpha-not-kaips": ({"app.kubernetes.io/name": "alpha"}, {"phase": "Running"}),
    }  # fmt: skip
    for name, (labels, status) in pods.items():
        manifest, patch = _pod(ns, name, labels, status)
        (tmp_path / f"{name}.json").write_text(manifest)
        portal.plane.kubectl("apply", "-f", str(tmp_path / f"{name}.json"))
        portal.plane.kubectl("patch", "pod", name, "-n", ns, "--subresource=status",
                             "--type=merge", "-p", patch)  # fmt: skip
    answer = portal.get("/api/v1/resources/alpha", "viewer")
    assert answer.status_code == 200, answer.text
    replicas = {r["id"]: r for r in answer.json()["replicas"]}
    assert sorted(replicas) == ["alpha-abc123-0", "alpha-def456-0"], replicas
    stable, canary = replicas["alpha-abc123-0"], replicas["alpha-def456-0"]
    assert (stable["revision"], stable["phase"], stable["restarts"]) == ("abc123", "ready", 2)
    assert stable["port"] == "10.88.0.7:8080" and stable["routed"] is True
    assert "last exit 137 (OOMKilled)" in stable["health"]
    assert (canary["revision"], canary["phase"], canary["restarts"]) == (
        "def456", "crashloopbackoff", 5
    )  # fmt: skip
    assert canary["routed"] is False and "back-off" in canary["health"]
    page = portal.get("/resources/alpha", "viewer")
    assert "alpha-def456-0" in page.text and "crashloopbackoff" in page.text
    catalog = portal.get("/api/v1/resources", "viewer").json()  # many rows: counts, no pod reads
    (row,) = [r for r in catalog["items"] if r["name"] == "alpha"]
    assert {r["id"] for r in row["replicas"]} == {"abc123-1", "abc123-2", "def456-1"}
    headers = {"Authorization": f"Bearer {portal.tokens['viewer']}"}
    with httpx.stream("GET", f"{portal.url}/resources/alpha/logs", headers=headers,
                      trust_env=False, timeout=60) as stream:  # fmt: skip
        assert stream.status_code == 200
        data = next(line for line in stream.iter_lines() if line.startswith("data:"))
    assert "No log lines could be read" in data and "alpha-abc123-0" in data, data
    assert f"kubectl logs -n {ns} -l app.kubernetes.io/name=alpha -f --prefix" in data

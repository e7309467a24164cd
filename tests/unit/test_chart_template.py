"""charts/kaip rendered by a real helm (built from Go modules by tools/helm/build.sh)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaip.plan import build_plan
from kaip.render.kube import render_manifests, restricted_violations
from kaip.settings import KubeSettings, Settings, load_settings
from kaip.spec import load_paths

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "kaip"
Template = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def template(helm: Path) -> Template:
    """``helm template`` of the chart with ``--set`` values, as a list of objects."""

    def render(*sets: str) -> list[dict[str, Any]]:
        args = [str(helm), "template", "kaip", str(CHART), "--namespace", "kaip-system"]
        for value in sets:
            args += ["--set", value]
        done = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return [d for d in yaml.safe_load_all(done.stdout) if d]

    return render


def allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules
    )


def test_watched_namespaces_get_a_role_binding_each_and_no_cluster_binding(
    template: Template,
) -> None:
    objects = template("watchNamespaces={ml,web}")
    kinds = [(o["kind"], o["metadata"].get("namespace")) for o in objects]
    assert ("RoleBinding", "ml") in kinds and ("RoleBinding", "web") in kinds
    assert not any(k == "ClusterRoleBinding" for k, _ in kinds)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=ml" in args and "--namespace=web" in args


def test_no_namespaces_means_one_cluster_role_binding(template: Template) -> None:
    objects = template()
    kinds = [o["kind"] for o in objects]
    assert kinds.count("ClusterRoleBinding") == 1
    role_bindings = [o["roleRef"]["kind"] for o in objects if o["kind"] == "RoleBinding"]
    assert role_bindings == ["Role"], "only leader election's, in the release namespace"


def test_the_operator_pod_meets_the_restricted_profile(template: Template) -> None:
    deployment = next(o for o in template() if o["kind"] == "Deployment")
    assert restricted_violations(deployment["spec"]["template"]["spec"]) == []


def test_rbac_covers_every_kind_kaip_renders_and_nothing_more(template: Template) -> None:
    role = next(o for o in template() if o["kind"] == "ClusterRole")
    rules = role["rules"]
    assert all("*" not in r["verbs"] + r["resources"] + r["apiGroups"] for r in rules)
    fixtures = ROOT / "tests" / "golden" / "fixtures"
    files = ["gpu-model.yaml", "keda.yaml", "training-kueue.yaml", "canary/new.yaml",
             "inference-pool.yaml"]  # fmt: skip
    specs = load_paths([ROOT / "examples", *(fixtures / f for f in files)])
    rendered = [
        *render_manifests(build_plan(specs.documents, Settings())),
        *render_manifests(build_plan(specs.documents, Settings(kube=KubeSettings(jobset=True)))),
    ]
    kinds = {(o["apiVersion"].rpartition("/")[0], o["kind"]) for o in rendered}
    plural = {"Service": "services", "ServiceAccount": "serviceaccounts",
              "ConfigMap": "configmaps", "Deployment": "deployments", "Job": "jobs",
              "HorizontalPodAutoscaler": "horizontalpodautoscalers",
              "PodDisruptionBudget": "poddisruptionbudgets", "NetworkPolicy": "networkpolicies",
              "HTTPRoute": "httproutes", "ScaledObject": "scaledobjects",
              "JobSet": "jobsets", "InferencePool": "inferencepools", "Role": "roles",
              "RoleBinding": "rolebindings"}  # fmt: skip
    assert {k for _, k in kinds} <= set(plural), "a new rendered kind needs a chart RBAC rule"
    for group, kind in kinds:
        for verb in ("get", "list", "create", "patch", "delete"):
            assert allowed(rules, group, plural[kind], verb), (group, kind, verb)
    assert not allowed(rules, "", "secrets", "get")
    # pods: read only (the artifact digest their init container reports; watch only to grant
    # it to a Model's endpoint picker), never changed
    assert allowed(rules, "", "pods", "list")
    for verb in ("create", "patch", "update", "delete"):
        assert not allowed(rules, "", "pods", verb)
    # what an endpoint picker's Role grants, the operator holds (or the apiserver refuses it)
    picker = next(
        o for o in rendered if o["kind"] == "Role" and o["metadata"]["name"].endswith("-epp")
    )
    for grant in picker["rules"]:
        for group in grant["apiGroups"]:
            for resource in grant["resources"]:
                for verb in grant["verbs"]:
                    assert allowed(rules, group, resource, verb), (group, resource, verb)
    assert allowed(rules, "kaip.dev", "models/status", "patch")
    assert allowed(rules, "", "events", "create")
    watched = {
        (group, resource)
        for r in rules
        if "watch" in r["verbs"]
        for group in r["apiGroups"]
        for resource in r["resources"]
    }
    granted = {("", "pods"), ("inference.networking.k8s.io", "inferencepools"),
               ("inference.networking.x-k8s.io", "inferenceobjectives"),
               ("inference.networking.x-k8s.io", "inferencemodelrewrites")}  # fmt: skip
    assert watched - granted == {
        ("kaip.dev", "models"), ("kaip.dev", "apps"), ("kaip.dev", "trainingjobs"),
        ("apps", "deployments"), ("batch", "jobs"),
    }, "the operator watches its resources and the workloads it owns, nothing else"  # fmt: skip


def test_the_network_knobs_reach_the_operators_settings(
    template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = template(
        "network.ingressNamespaces={envoy-gateway-system,monitoring}",
        "network.dnsPodLabels.app=coredns",
    )
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        if "value" in e  # POD_NAME comes from the downward API
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    kube = load_settings().kube
    assert kube.ingress_namespaces == ("envoy-gateway-system", "monitoring")
    assert kube.dns_namespace == "kube-system"
    assert kube.dns_pod_labels == {"k8s-app": "kube-dns", "app": "coredns"}


def test_more_than_one_replica_needs_leader_election(helm: Path, template: Template) -> None:
    args = [str(helm), "template", "kaip", str(CHART), "--namespace", "kaip-system"]
    args += ["--set", "replicas=2", "--set", "leaderElection.enabled=false"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "replicas > 1 needs leaderElection.enabled" in done.stderr
    single = next(o for o in template("leaderElection.enabled=false") if o["kind"] == "Deployment")
    assert single["spec"]["strategy"] == {"type": "Recreate"}
    assert "--no-leader-elect" in single["spec"]["template"]["spec"]["containers"][0]["args"]


def test_leader_election_takes_the_releases_own_lease_and_nothing_else(
    template: Template,
) -> None:
    objects = template("replicas=3", "watchNamespaces={ml}")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {
        "--leader-elect",
        "--leader-election-namespace=kaip-system",
        "--leader-election-name=kaip-operator",
        "--lease-duration=15",
        "--renew-deadline=10",
        "--retry-period=2",
    } <= set(container["args"])
    pod_name = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    assert pod_name in container["env"]
    roles = [o for o in objects if o["kind"] == "Role"]
    (role,) = roles
    assert role["metadata"]["namespace"] == "kaip-system"
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["kaip-operator"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    binding = next(
        o for o in objects if o["kind"] == "RoleBinding" and o["roleRef"]["kind"] == "Role"
    )
    assert binding["metadata"]["namespace"] == "kaip-system"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kaip-operator", "namespace": "kaip-system"}
    ]
    cluster_role = next(o for o in objects if o["kind"] == "ClusterRole")
    assert not allowed(cluster_role["rules"], "coordination.k8s.io", "leases", "update")


def test_the_portal_is_off_by_default_and_reads_and_reviews_only(
    helm: Path, template: Template
) -> None:
    assert not any("portal" in o["metadata"]["name"] for o in template())
    objects = template("watchNamespaces={ml}", "portal.enabled=true")
    portal = [o for o in objects if o["metadata"]["name"].startswith("kaip-operator-portal")]
    kinds = sorted(o["kind"] for o in portal)
    assert kinds == sorted(["ServiceAccount", "ClusterRole", "RoleBinding", "ClusterRole",
                            "ClusterRoleBinding", "Deployment", "Service"])  # fmt: skip
    roles = {o["metadata"]["name"]: o["rules"] for o in portal if o["kind"] == "ClusterRole"}
    reads = roles["kaip-operator-portal"]
    assert allowed(reads, "kaip.dev", "models", "patch")
    assert allowed(reads, "", "events", "list") and not allowed(reads, "", "events", "create")
    assert allowed(reads, "", "pods", "list") and allowed(reads, "", "pods/log", "get")
    assert not allowed(reads, "", "pods", "delete")
    assert not allowed(reads, "", "pods/exec", "create")
    assert not allowed(reads, "", "secrets", "get")
    reviews = roles["kaip-operator-portal-reviews"]
    assert allowed(reviews, "authentication.k8s.io", "tokenreviews", "create")
    assert allowed(reviews, "authorization.k8s.io", "subjectaccessreviews", "create")
    binding = next(o for o in portal if o["kind"] == "RoleBinding")
    assert binding["metadata"]["namespace"] == "ml"
    deployment = next(o for o in portal if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"][:3] == ["--host=0.0.0.0", "--port=8090", "--namespace=ml"]
    assert (
        "--prometheus=http://prometheus-operated.monitoring.svc:9090"
        in (pod["containers"][0]["args"])
    )  # the operator's Prometheus: the catalog's traffic and the charts
    operator = next(o for o in objects if o["metadata"]["name"] == "kaip-operator"
                    and o["kind"] == "Deployment")  # fmt: skip
    selector = operator["spec"]["selector"]["matchLabels"].items()
    assert not selector <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert restricted_violations(pod) == []
    everywhere = template("portal.enabled=true")
    shown = next(o for o in everywhere if o["metadata"]["name"] == "kaip-operator-portal"
                 and o["kind"] == "Deployment")  # fmt: skip
    assert "--all-namespaces" in shown["spec"]["template"]["spec"]["containers"][0]["args"]
    several = subprocess.run(
        [str(helm), "template", "kaip", str(CHART), "--set", "watchNamespaces={a,b}",
         "--set", "portal.enabled=true"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert several.returncode != 0 and "portal.namespace" in several.stderr


def test_cost_prices_reach_the_operator_as_a_mounted_file_it_reads(
    template: Template, tmp_path: Path
) -> None:
    from kaip.cli.operator import _price_book

    plain = template()
    assert not [o for o in plain if o["kind"] == "ConfigMap"]  # no prices: none rendered
    pod = next(o for o in plain if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert "KAIP_COST_PRICES_FILE" not in {e["name"] for e in pod["containers"][0]["env"]}
    objects = template("cost.prices.owners.team-a.cpuCoreHourUsd=0.5",
                       "cost.prices.nodeTypes.m5\\.xlarge.ramGbHourUsd=0.01")  # fmt: skip
    [prices] = [o for o in objects if o["kind"] == "ConfigMap"]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "prices")
    volume = next(v for v in pod["volumes"] if v["name"] == "prices")
    assert volume["configMap"]["name"] == prices["metadata"]["name"] and mount["readOnly"]
    assert env["KAIP_COST_PRICES_FILE"] == f"{mount['mountPath']}/prices.yaml"
    assert "kaip.dev/prices-sha256" in deployment["spec"]["template"]["metadata"]["annotations"]
    # What the operator reads from that file: the owner's and the node type's prices.
    (tmp_path / "prices.yaml").write_text(prices["data"]["prices.yaml"])
    book = _price_book({"KAIP_COST_PRICES_FILE": str(tmp_path / "prices.yaml")})
    assert book.resolve("team-a", None).cpu_core_hour == 0.5
    assert book.resolve("team-b", "m5.xlarge").ram_gb_hour == 0.01


def test_the_portal_prices_its_cost_column_with_the_operators_prices(template: Template) -> None:
    def portal(*values: str) -> dict[str, Any]:
        objects = template("portal.enabled=true", *values)
        (found,) = [o for o in objects if o["kind"] == "Deployment" and "portal" in str(
            o["metadata"]["name"])]  # fmt: skip
        return dict(found["spec"]["template"])

    plain = portal()["spec"]["containers"][0]
    assert "prices" not in {m["name"] for m in plain["volumeMounts"]} and "env" not in plain
    priced = portal("cost.prices.default.cpuCoreHourUsd=0.05")
    container = priced["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "prices")
    volume = next(v for v in priced["spec"]["volumes"] if v["name"] == "prices")
    assert env["KAIP_COST_PRICES_FILE"] == f"{mount['mountPath']}/prices.yaml"
    assert volume["configMap"]["name"].endswith("-prices") and mount["readOnly"]
    assert "kaip.dev/prices-sha256" in priced["metadata"]["annotations"]


def test_a_pod_monitor_scrapes_every_model_pod_when_asked_and_names_its_owner(
    template: Template,
) -> None:
    assert not [o for o in template() if o["kind"] == "PodMonitor"]  # off by default
    objects = template("podMonitor.enabled=true", "podMonitor.labels.release=prom",
                       "watchNamespaces={ml,web}")  # fmt: skip
    [monitor] = [o for o in objects if o["kind"] == "PodMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": ["ml", "web"]}
    [everywhere] = [o for o in template("podMonitor.enabled=true") if o["kind"] == "PodMonitor"]
    assert everywhere["spec"]["namespaceSelector"] == {"any": True}
    # It selects what kaip renders for a Model (and not an App), on its named port and path.
    specs = load_paths([ROOT / "examples"])
    settings = Settings()
    rendered = render_manifests(build_plan(specs.documents, settings))
    pods = [o["spec"]["template"] for o in rendered if o["kind"] == "Deployment"]
    wanted = spec["selector"]["matchLabels"]
    chosen = [p for p in pods if wanted.items() <= p["metadata"]["labels"].items()]
    assert chosen and all(p["metadata"]["labels"]["app.kubernetes.io/component"] == "model"
                          for p in chosen)  # fmt: skip
    [endpoint] = spec["podMetricsEndpoints"]
    for pod in chosen:
        ports = {p["name"]: p for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        assert endpoint["port"] in ports
        assert pod["metadata"]["annotations"]["prometheus.io/path"] == endpoint["path"]
        assert "kaip.dev/owner" in pod["metadata"]["labels"]
    assert {"sourceLabels": ["__meta_kubernetes_pod_label_kaip_dev_owner"],
            "targetLabel": "owner"} in endpoint["relabelings"]  # fmt: skip

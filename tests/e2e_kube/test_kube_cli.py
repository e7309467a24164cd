"""``kaip apply`` / ``kaip delete`` as a user runs them: a real process against a real API server,
with one clear message and exit code for each way it can go wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kube_harness import ControlPlane, free_port, write_kubeconfig
from kubernetes import client

from kaip.errors import (
    ForeignObjectError,
    KubeConfigError,
    KubeForbiddenError,
    KubeUnreachableError,
)


def kaip(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kaip.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )


def assert_one_clear_error(out: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert out.returncode == code, out.stderr
    assert text in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    path = tmp_path / "rendered.yaml"
    path.write_text(
        yaml.safe_dump_all(
            [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {}},
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}},
            ]
        )
    )
    return path


def test_apply_dry_run_apply_and_delete_print_a_summary(
    kube_api: ControlPlane, api_namespace: str, manifests: Path
) -> None:
    common = ("--kubeconfig", kube_api.kubeconfig, "-n", api_namespace)

    dry = kaip("apply", manifests, *common, "--dry-run=server")
    created = kaip("apply", manifests, *common)
    again = kaip("apply", manifests, *common, "--prune")
    deleted = kaip("delete", manifests, *common)

    assert dry.returncode == 0, dry.stderr
    assert f"configmap/a -n {api_namespace} created (server dry run)" in dry.stdout
    assert created.returncode == 0, created.stderr
    assert "2 created" in created.stdout
    assert "ready: 2 object(s)" in created.stdout
    assert "\n2 unchanged\n" in again.stdout
    assert deleted.returncode == 0, deleted.stderr
    assert "secret/s -n" in deleted.stdout and "2 deleted" in deleted.stdout


def test_apply_refuses_an_object_it_did_not_create_with_exit_4_until_adopt(
    kube_api: ControlPlane, api_namespace: str, manifests: Path
) -> None:
    common = ("--kubeconfig", kube_api.kubeconfig, "-n", api_namespace)
    kube_api.kubectl("-n", api_namespace, "create", "configmap", "a", "--from-literal=k=v")

    refused = kaip("apply", manifests, *common)
    assert refused.returncode == ForeignObjectError.exit_code == 4, refused.stderr
    assert "Traceback" not in refused.stderr
    assert f"ConfigMap {api_namespace}/a: kaip did not create it" in refused.stderr
    assert "its fields are managed by kubectl-create" in refused.stderr
    assert "pass --adopt" in refused.stderr
    assert kube_api.kubectl("-n", api_namespace, "get", "secret", "s", check=False) == ""

    adopted = kaip("apply", manifests, *common, "--adopt")
    assert adopted.returncode == 0, adopted.stderr
    assert f"configmap/a -n {api_namespace} adopted" in adopted.stdout
    assert f"secret/s -n {api_namespace} created" in adopted.stdout


def test_unreachable_cluster_is_one_message(kube_api: ControlPlane, manifests: Path) -> None:
    dead = kube_api.workdir / "dead.kubeconfig"
    write_kubeconfig(dead, f"https://127.0.0.1:{free_port()}", kube_api.ca_file, "admin", "x")

    out = kaip("apply", manifests, "--kubeconfig", dead)

    assert_one_clear_error(out, KubeUnreachableError.exit_code, "cannot reach the Kubernetes API")
    assert "Connection refused" in out.stderr or "connection refused" in out.stderr.lower()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("clusters: [[[", "cannot use"),
        ("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n", "cannot use"),
    ],
)
def test_bad_kubeconfig_is_one_message(
    tmp_path: Path, manifests: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)

    out = kaip("apply", manifests, "--kubeconfig", path)

    assert_one_clear_error(out, KubeConfigError.exit_code, expected)


def test_unknown_context_names_the_known_ones(kube_api: ControlPlane, manifests: Path) -> None:
    out = kaip("apply", manifests, "--kubeconfig", kube_api.kubeconfig, "--context", "prod")

    assert_one_clear_error(out, KubeConfigError.exit_code, "context 'prod' is not in")
    assert "kaip-test" in out.stderr


def test_wrong_token_is_a_kubeconfig_error(kube_api: ControlPlane, manifests: Path) -> None:
    bad = kube_api.workdir / "bad-token.kubeconfig"
    write_kubeconfig(bad, kube_api.server, kube_api.ca_file, "admin", "not-a-token")

    out = kaip("apply", manifests, "--kubeconfig", bad, "-n", "default")

    assert_one_clear_error(out, KubeConfigError.exit_code, "401 Unauthorized")


def test_rbac_denial_names_the_user_and_the_verb(
    kube_api: ControlPlane, api_namespace: str, manifests: Path
) -> None:
    # alice's group may manage ConfigMaps in this namespace, and nothing else.
    with kube_api.api_client() as api:
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(
            api_namespace,
            {
                "metadata": {"name": "configmaps"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["configmaps"],
                        "verbs": ["get", "list", "create", "patch", "delete"],
                    }
                ],
            },
        )
        rbac.create_namespaced_role_binding(
            api_namespace,
            {
                "metadata": {"name": "developers"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "configmaps",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Group",
                        "name": "kaip-developers",
                    }
                ],
            },
        )
    alice = kube_api.kubeconfig_for("alice")

    out = kaip("apply", manifests, "--kubeconfig", alice, "-n", api_namespace)

    assert_one_clear_error(out, KubeForbiddenError.exit_code, "forbidden: cannot apply secret/s")
    assert 'User "alice" cannot' in out.stderr


def test_missing_namespace_says_to_create_it(kube_api: ControlPlane, manifests: Path) -> None:
    out = kaip("apply", manifests, "--kubeconfig", kube_api.kubeconfig, "-n", "nowhere")

    assert_one_clear_error(out, 1, "namespace nowhere does not exist")
    assert "kubectl create namespace nowhere" in out.stderr


def _model_spec(directory: Path, name: str, names: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "kaip.yaml"
    path.write_text(
        "apiVersion: kaip.dev/v1alpha1\nkind: Model\n"
        f"metadata: {{name: {name}}}\nspec:\n  owner: tests\n"
        # Pinned: kaip apply would otherwise download it to pin it (never reachable here).
        "  artifact: {uri: 'https://example.invalid/m.onnx', format: onnx,\n"
        f"    sha256: '{'a' * 64}'}}\n"
        f"  serve: {{names: {names}}}\n"
        "  scaling: {minReplicas: 1, maxReplicas: 1}\n"
    )
    return path


def test_apply_refuses_a_model_whose_served_name_another_model_in_the_namespace_serves(
    kube_cluster: ControlPlane, cluster_namespace: str, tmp_path: Path
) -> None:
    common = ("--kubeconfig", kube_cluster.kubeconfig, "-n", cluster_namespace, "--no-wait")
    alpha = _model_spec(tmp_path / "alpha", "alpha", "[org/shared, alpha]")
    beta = _model_spec(tmp_path / "beta", "beta", "[org/shared/large]")

    assert kaip("apply", alpha, *common).returncode == 0
    refused = kaip("apply", beta, *common)
    assert_one_clear_error(
        refused,
        2,
        f"Model 'beta' would serve the name 'org/shared/large' in namespace "
        f"'{cluster_namespace}', but Model 'alpha' there already serves 'org/shared', which "
        "overlaps it: give it other serve.names (nothing was applied)",
    )
    with kube_cluster.api_client() as api:
        deployments = client.AppsV1Api(api).list_namespaced_deployment(cluster_namespace)
    assert [d.metadata.name for d in deployments.items if "beta" in d.metadata.name] == []
    again = kaip("apply", alpha, *common)  # its own route does not count against it
    assert again.returncode == 0, again.stderr

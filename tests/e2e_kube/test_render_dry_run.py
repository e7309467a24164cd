"""Every rendered object passes a real kube-apiserver's server-side dry-run, in a namespace
labelled ``pod-security.kubernetes.io/enforce=restricted``.

The objects are the reviewed goldens (``tests/golden/rendered``), which the golden tests keep
equal to what ``kaip render`` produces now. Each set is applied with ``kubectl apply
--server-side --dry-run=server`` (strict field validation, so an unknown or misplaced field
fails), with PodSecurity ``warn`` on so that a pod template outside the restricted profile shows
up as a warning; and each pod template is also sent as a Pod, which the ``enforce`` level
rejects outright. HTTPRoute, ScaledObject, JobSet and InferencePool are checked against the real
CRDs: Gateway API's from the harness cache (``tools/k8s/build.sh``), KEDA's, JobSet's and the
Gateway API Inference Extension's from their Go modules (``go mod download``, cached in the
module cache; JobSet's version is the one Kueue's module requires, so the Kueue build has usually
fetched it already; the Inference Extension's is the endpoint picker's version kaip renders).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_harness import ControlPlane, cluster_crds

from kaip.plan import build_plan
from kaip.render.kube import kustomize_files, manifests_yaml, render_manifests
from kaip.render.kube.inference_pool import EPP_VERSION
from kaip.settings import Settings
from kaip.spec import load_paths

GOLDEN = Path(__file__).parents[1] / "golden" / "rendered"
EXAMPLES = Path(__file__).parents[2] / "examples"
KEDA_MODULE = ("github.com/kedacore/keda/v2", "v2.17.2")
KEDA_CRD = "config/crd/bases/keda.sh_scaledobjects.yaml"
HTTPROUTE_CRD = "gateway.networking.k8s.io_httproutes.yaml"
JOBSET_MODULE = ("sigs.k8s.io/jobset", "v0.11.1")
JOBSET_CRD = "config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml"
INFERENCE_MODULE = ("sigs.k8s.io/gateway-api-inference-extension", EPP_VERSION)
INFERENCE_CRD = "config/crd/bases/inference.networking.k8s.io_inferencepools.yaml"
CRD_NAMES = (
    "httproutes.gateway.networking.k8s.io",
    "scaledobjects.keda.sh",
    "jobsets.jobset.x-k8s.io",
    "inferencepools.inference.networking.k8s.io",
)


def _kubectl(
    plane: ControlPlane, *args: str, documents: Sequence[Any] | None = None
) -> subprocess.CompletedProcess[str]:
    # kaip render's own YAML (what users pipe to kubectl), not PyYAML's defaults: those leave
    # a revision id like 710124e060 unquoted, which kubectl (YAML 1.2) reads as a number
    stdin = manifests_yaml(documents) if documents is not None else None
    return subprocess.run(
        [str(plane.bin_dir / "kubectl"), "--kubeconfig", str(plane.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def module_dir(module: str, version: str) -> Path:
    try:
        out = subprocess.run(
            ["go", "mod", "download", "-json", f"{module}@{version}"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"},
        )
    except FileNotFoundError:
        pytest.fail("go is not installed: it fetches the Gateway API and KEDA CRDs", pytrace=False)
    info = json.loads(out.stdout or "{}")
    if out.returncode != 0 or "Dir" not in info:
        pytest.fail(
            f"go mod download {module}@{version} failed: {info.get('Error') or out.stderr}",
            pytrace=False,
        )
    return Path(info["Dir"])


@pytest.fixture(scope="module")
def restricted_namespace(kube_api: ControlPlane) -> str:
    httproute = [p for p in cluster_crds(kube_api.bin_dir) if p.name == HTTPROUTE_CRD]
    if not httproute:
        pytest.fail(f"{HTTPROUTE_CRD} missing: run tools/k8s/build.sh", pytrace=False)
    crds = (
        httproute[0],
        module_dir(*KEDA_MODULE) / KEDA_CRD,
        module_dir(*JOBSET_MODULE) / JOBSET_CRD,
        module_dir(*INFERENCE_MODULE) / INFERENCE_CRD,
    )
    for crd in crds:
        applied = _kubectl(kube_api, "apply", "--server-side", "--force-conflicts", "-f", str(crd))
        assert applied.returncode == 0, applied.stderr
    established = _kubectl(
        kube_api,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{name}" for name in CRD_NAMES),
    )
    assert established.returncode == 0, established.stderr
    name = f"restricted-{uuid.uuid4().hex[:8]}"
    level = "restricted"
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": level,
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": level,
                "pod-security.kubernetes.io/warn-version": "latest",
            },
        },
    }
    created = _kubectl(kube_api, "create", "-f", "-", documents=[namespace])
    assert created.returncode == 0, created.stderr
    # The PriorityClasses the goldens name (a cluster's admin makes them; admission checks
    # that a pod's class exists).
    classes = {
        pod["priorityClassName"]
        for golden in GOLDEN.glob("*.yaml")
        for obj in yaml.safe_load_all(golden.read_text())
        if obj
        for template in _templates(obj)
        for pod in [template["spec"]]
        if "priorityClassName" in pod
    }
    for priority, class_name in enumerate(sorted(classes)):
        document = {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": class_name},
            "value": 1000 + priority,
        }
        made = _kubectl(kube_api, "apply", "--server-side", "-f", "-", documents=[document])
        assert made.returncode == 0, made.stderr
    return name


def _in_namespace(objects: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    for obj in objects:
        obj["metadata"]["namespace"] = namespace
    return objects


def _templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod templates of a Deployment, a Job or a JobSet's replicated Jobs."""
    if obj["kind"] in ("Deployment", "Job"):
        return [obj["spec"]["template"]]
    if obj["kind"] == "JobSet":
        return [job["template"]["spec"]["template"] for job in obj["spec"]["replicatedJobs"]]
    return []


def _pods_of(objects: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{obj['metadata']['name']}-pod-{index}",
                "namespace": namespace,
                "labels": template["metadata"]["labels"],
            },
            "spec": template["spec"],
        }
        for obj in objects
        for index, template in enumerate(_templates(obj))
    ]


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.yaml")), ids=lambda p: p.stem)
def test_rendered_objects_pass_server_side_dry_run(
    kube_api: ControlPlane, restricted_namespace: str, golden: Path
) -> None:
    objects = _in_namespace(list(yaml.safe_load_all(golden.read_text())), restricted_namespace)
    applied = _kubectl(
        kube_api,
        "apply",
        "--server-side",
        "--field-manager=kaip",
        "--dry-run=server",
        "--validate=strict",
        "-o",
        "name",
        "-f",
        "-",
        documents=objects,
    )
    assert applied.returncode == 0, applied.stderr
    assert "Warning" not in applied.stderr, applied.stderr
    assert len(applied.stdout.splitlines()) == len(objects)

    pods = _pods_of(objects, restricted_namespace)
    assert pods, f"{golden.name} renders no pod"
    created = _kubectl(kube_api, "create", "--dry-run=server", "-o", "name", "-f", "-",
                       documents=pods)  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert len(created.stdout.splitlines()) == len(pods)


def test_the_namespace_really_enforces_the_restricted_profile(
    kube_api: ControlPlane, restricted_namespace: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root", "namespace": restricted_namespace},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/c:1"}]},
    }
    refused = _kubectl(kube_api, "create", "--dry-run=server", "-f", "-", documents=[pod])
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr


def test_out_directory_is_what_kustomize_builds(kube_api: ControlPlane, tmp_path: Path) -> None:
    specs = load_paths([EXAMPLES / "quickstart"])
    objects = render_manifests(build_plan(specs.documents, Settings(), "demo"))
    for name, text in kustomize_files(objects).items():
        (tmp_path / name).write_text(text)
    built = _kubectl(kube_api, "kustomize", str(tmp_path))
    assert built.returncode == 0, built.stderr

    def key(obj: dict[str, Any]) -> tuple[str, str]:
        return (obj["kind"], obj["metadata"]["name"])

    assert sorted(yaml.safe_load_all(built.stdout), key=key) == sorted(objects, key=key)

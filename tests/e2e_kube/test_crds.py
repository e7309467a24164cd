"""The CRDs from ``kaip crd`` on a real kube-apiserver, judging resources as ``kaip validate`` does.

The apiserver must accept and establish the three CRDs, and then, for every document of the spec
corpus and every one-step neighbour of the quickstart's Model and App, accept a custom resource
(dry run, strict field validation) exactly when kaip's loader accepts the document. One
difference is known and left out: the apiserver drops a ``null`` from a field that is not
nullable before validating, where kaip reports it, so documents holding a ``null`` are skipped.
Where a CEL rule says what kaip says (serve.engine's checks, :data:`WORDED_ALIKE`), the
apiserver's reason must hold kaip's words too, the value they name included.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_harness import ControlPlane, HarnessError
from kubernetes import client
from kubernetes.client.rest import ApiException

from kaip.errors import SpecError
from kaip.spec import GROUP, KINDS, VERSION, load_document
from kaip.spec.limits import BoundedLoader

ROOT = Path(__file__).parents[2]
KAIP = Path(sys.executable).with_name("kaip")
PLURALS = {kind: f"{kind.lower()}s" for kind in KINDS}

sys.path.insert(0, str(ROOT / "tests" / "unit"))  # the mutations the property tests use
from spec_strategies import paths, variants  # noqa: E402


@pytest.fixture(scope="module")
def crds_installed(kube_api: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The CRDs, applied with the real ``kaip crd`` and ``kubectl``, and established."""
    out = subprocess.run(
        [str(KAIP), "crd"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    manifest = tmp_path_factory.mktemp("crds") / "crds.yaml"
    manifest.write_text(out)
    kube_api.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifest))
    names = [f"crd/{plural}.{GROUP}" for plural in PLURALS.values()]
    kube_api.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
    return list(yaml.safe_load_all(out))


@pytest.fixture
def custom(kube_api: ControlPlane) -> Iterator[client.CustomObjectsApi]:
    with kube_api.api_client() as api:
        yield client.CustomObjectsApi(api)


def _kubectl_once_discovered(plane: ControlPlane, *args: str) -> str:
    """kubectl, retried while the apiserver's discovery has not yet caught up with new CRDs."""
    deadline = time.monotonic() + 30
    while True:
        try:
            out = plane.kubectl(*args)
        except HarnessError:
            if time.monotonic() > deadline:
                raise
        else:
            if GROUP in out or time.monotonic() > deadline:
                return out
        time.sleep(0.5)


def _server_verdict(
    custom: client.CustomObjectsApi, namespace: str, plural: str, doc: Any
) -> str | None:
    """None if the apiserver would create ``doc``; else its reason."""
    try:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, doc, dry_run="All", field_validation="Strict"
        )
    except ApiException as exc:
        if exc.status in (400, 422):
            return str(json.loads(exc.body).get("message", exc.body))
        raise
    return None


def _kaip_verdict(doc: Any) -> str | None:
    try:
        load_document(doc)
    except SpecError as exc:
        return exc.message
    return None


def _holds_null(node: Any) -> bool:
    if node is None:
        return True
    if isinstance(node, dict):
        return any(_holds_null(v) for v in node.values())
    if isinstance(node, list):
        return any(_holds_null(v) for v in node)
    return False


def _as_resource(doc: Any) -> Any:
    """What a user would send: the namespace comes from the request, not the document."""
    doc = copy.deepcopy(doc)
    if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
        doc["metadata"].pop("namespace", None)
    return doc


WORDED_ALIKE = ("is set by kaip", "loads format", "serves the OpenAI API only")
"""kaip's problems that a CEL rule's ``messageExpression`` words exactly as kaip does (serve.engine:
an argument kaip sets, a format or protocols the engine does not serve)."""


def _disagreements(
    custom: client.CustomObjectsApi, namespace: str, kind: str, docs: list[Any]
) -> list[tuple[Any, str | None, str | None]]:
    found = []
    for raw in docs:
        doc = _as_resource(raw)
        if not isinstance(doc, dict) or _holds_null(doc):
            continue
        ours = _kaip_verdict(doc)
        theirs = _server_verdict(custom, namespace, PLURALS[kind], doc)
        if (ours is None) != (theirs is None):
            found.append((doc, ours, theirs))
    return found


def test_apiserver_establishes_the_crds(kube_api: ControlPlane, crds_installed: Any) -> None:
    listed = json.loads(
        kube_api.kubectl("get", "crd", "-l", "app.kubernetes.io/part-of=kaip", "-o", "json")
    )
    by_name = {c["metadata"]["name"]: c for c in listed["items"]}
    assert set(by_name) == {f"{p}.{GROUP}" for p in PLURALS.values()}
    for crd in by_name.values():
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    resources = _kubectl_once_discovered(
        kube_api, "api-resources", "--api-group", GROUP, "-o", "wide"
    )
    assert "kmodel" in resources and "kaip" in resources


def test_corpus_documents_are_judged_alike(
    crds_installed: Any, custom: client.CustomObjectsApi, api_namespace: str
) -> None:
    judged = 0
    found = []
    corpus = ROOT / "tests" / "spec_corpus"
    for path in sorted(corpus.rglob("*.y*ml")):
        try:  # bounded as kaip reads it: the corpus holds a billion laughs and a cycle
            docs = list(yaml.load_all(path.read_text(), Loader=BoundedLoader))
        except yaml.YAMLError:
            continue  # a syntax error or a limit is the loader's to report; nothing to judge
        for doc in docs:
            if not (isinstance(doc, dict) and doc.get("apiVersion") == f"{GROUP}/{VERSION}"):
                continue  # no resource to send: the loader's own business
            if doc.get("kind") not in KINDS:
                continue
            judged += 1
            found += _disagreements(custom, api_namespace, doc["kind"], [doc])
    assert judged >= 50
    assert found == []


def test_engine_refusals_read_as_kaips(
    crds_installed: Any, custom: client.CustomObjectsApi, api_namespace: str
) -> None:
    docs = yaml.safe_load_all((ROOT / "tests/spec_corpus/bad/engine-mistakes.yaml").read_text())
    worded = 0
    for doc in docs:
        with pytest.raises(SpecError) as refused:
            load_document(doc)
        problems = [p for p in refused.value.problems if any(w in p.message for w in WORDED_ALIKE)]
        theirs = _server_verdict(custom, api_namespace, "models", _as_resource(doc))
        for problem in problems:
            worded += 1
            assert f"{problem.message} ({problem.hint})" in (theirs or ""), doc["metadata"]
    assert worded >= 6  # each rule, and each form of its message, at least once


@pytest.mark.parametrize("name", ["digits", "digits-ui"])
def test_every_neighbour_of_the_quickstart_is_judged_alike(
    name: str, crds_installed: Any, custom: client.CustomObjectsApi, api_namespace: str
) -> None:
    docs = list(yaml.safe_load_all((ROOT / "examples" / "quickstart" / "kaip.yaml").read_text()))
    (doc,) = [d for d in docs if d["metadata"]["name"] == name]
    neighbours = [v for path in paths(doc) if path for v in variants(doc, path)]
    assert len(neighbours) > 100
    assert _disagreements(custom, api_namespace, doc["kind"], neighbours) == []


def test_status_subresource_and_printer_columns(
    kube_api: ControlPlane, crds_installed: Any, custom: client.CustomObjectsApi, api_namespace: str
) -> None:
    docs = list(yaml.safe_load_all((ROOT / "examples" / "quickstart" / "kaip.yaml").read_text()))
    model = docs[0]
    custom.create_namespaced_custom_object(GROUP, VERSION, api_namespace, "models", model)
    status = {
        "observedGeneration": 1,
        "replicas": 2,
        "url": "http://digits.ns.svc:8080",
        "revisions": [{"name": "abc123", "weight": 90}, {"name": "def456", "weight": 10}],
        "traffic": "abc123=90,def456=10",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "observedGeneration": 1,
                "lastTransitionTime": "2026-01-02T03:04:05Z",
                "reason": "ReplicasReady",
                "message": "2/2 replicas ready",
            }
        ],
        "rollout": {
            "stable": {"revision": "abc123", "spec": {"owner": "ml-platform"}},
            "canary": {"revision": "def456", "step": 0, "stepStartedAt": "2026-01-02T03:04:05Z"},
            "lastDecision": {
                "action": "hold",
                "reason": "paused at 10%",
                "revision": "def456",
                "at": "2026-01-02T03:04:05Z",
                "evidence": {"step": 1},
            },
        },
    }
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, api_namespace, "models", "digits", {"status": status}
    )
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, api_namespace, "models", "digits")
    assert stored["status"] == status  # nothing pruned
    assert stored["spec"]["scaling"]["scaleToZeroAfterSeconds"] == 300  # a CRD default
    table = _kubectl_once_discovered(kube_api, "get", "kaip", "-n", api_namespace)
    header, row = table.splitlines()[:2]
    assert header.split() == [
        "NAME", "OWNER", "FORMAT", "READY", "REPLICAS", "TRAFFIC", "ROLLOUT", "AGE"
    ]  # fmt: skip
    assert row.split()[:7] == [
        "model.kaip.dev/digits", "ml-platform", "sklearn", "True", "2", "abc123=90,def456=10",
        "hold",
    ]  # fmt: skip

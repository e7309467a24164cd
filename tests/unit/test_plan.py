"""kaip.plan: revision ids, labels and namespaces of the resolved plan."""

from __future__ import annotations

import pytest

from kaip.errors import SpecError
from kaip.plan import LABEL_REVISION, build_plan, canonical_spec_json, local_gaps, revision_id
from kaip.settings import Settings
from kaip.spec import Model, load_text

MODEL = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: digits, labels: {team: a}}
spec:
  owner: ml-platform
  artifact: {uri: model.onnx, format: onnx}
"""


def _model(text: str = MODEL) -> Model:
    (doc,) = load_text(text).documents
    assert isinstance(doc.resource, Model)
    return doc.resource


def test_revision_id_is_short_hex_and_stable() -> None:
    rev = revision_id(_model())
    assert len(rev) == 10
    assert int(rev, 16) >= 0
    assert revision_id(_model()) == rev


def test_restating_a_default_keeps_the_revision() -> None:
    explicit = MODEL + "  scaling: {minReplicas: 1, maxReplicas: 3}\n"
    assert revision_id(_model(explicit)) == revision_id(_model())


def test_fields_left_at_their_default_are_not_part_of_the_revision() -> None:
    """So a field added to the spec later (with a default) keeps every revision id as it was,
    and an upgraded operator rolls out nothing that did not change."""
    assert canonical_spec_json(_model()) == (
        '{"artifact":{"format":"onnx","uri":"model.onnx"},"owner":"ml-platform"}'
    )
    assert revision_id(_model()) == "515dd0b716"
    with_pod_defaults = MODEL + "  env: {}\n  tolerations: []\n  volumes: []\n"
    assert revision_id(_model(with_pod_defaults)) == revision_id(_model())
    assert revision_id(_model(MODEL + "  env: {A: b}\n")) != revision_id(_model())


def test_spec_changes_make_a_new_revision_metadata_changes_do_not() -> None:
    changed_spec = MODEL.replace("model.onnx", "model-v2.onnx")
    changed_labels = MODEL.replace("team: a", "team: b")
    assert revision_id(_model(changed_spec)) != revision_id(_model())
    assert revision_id(_model(changed_labels)) == revision_id(_model())


def test_workload_labels_and_selector() -> None:
    plan = build_plan(load_text(MODEL).documents, Settings())
    (workload,) = plan.workloads
    assert workload.namespace == "default"
    assert workload.labels == {
        "team": "a",
        "app.kubernetes.io/name": "digits",
        "app.kubernetes.io/instance": "digits",
        "app.kubernetes.io/component": "model",
        "app.kubernetes.io/part-of": "kaip",
        "app.kubernetes.io/managed-by": "kaip",
        "kaip.dev/owner": "ml-platform",
        "app.kubernetes.io/version": workload.revision,
        "kaip.dev/revision": workload.revision,
    }
    assert LABEL_REVISION not in workload.common_labels
    assert set(workload.selector.items()) <= set(workload.common_labels.items())
    assert workload.revision_name == f"digits-{workload.revision}"


def test_namespace_flag_fills_in_but_never_moves_a_resource() -> None:
    docs = load_text(MODEL).documents
    assert build_plan(docs, Settings(), "prod").workloads[0].namespace == "prod"
    pinned = load_text(MODEL.replace("name: digits,", "name: digits, namespace: ml,")).documents
    assert build_plan(pinned, Settings()).workloads[0].namespace == "ml"
    with pytest.raises(SpecError) as info:
        build_plan(pinned, Settings(), "prod")
    assert "metadata.namespace" in str(info.value)
    assert "'ml'" in str(info.value) and "'prod'" in str(info.value)


POD_REFS = (
    MODEL
    + """\
  envValueFrom:
    TOKEN: {secretKeyRef: {name: api, key: token}}
    FLAGS: {configMapKeyRef: {name: flags, key: f, optional: true}}
  envFrom: [{secretRef: {name: all}}]
  volumes: [{name: cfg, mountPath: /etc/cfg, configMap: {name: cfg}}]
  nodeSelector: {pool: gpu}
"""
)


def test_local_gaps_name_a_missing_secret_reference_and_say_what_cannot_apply() -> None:
    specs = load_text(POD_REFS, "kaip.yaml")
    gaps = local_gaps(specs, {})
    (problem,) = gaps.problems
    assert (problem.file, problem.line, problem.path) == ("kaip.yaml", 1, "spec.envValueFrom.TOKEN")
    assert "Secret 'api', key 'token'" in problem.message
    assert problem.hint.startswith("export TOKEN=")
    assert len(gaps.notices) == 3, gaps.notices  # optional FLAGS, envFrom, the volume
    assert not any("nodeSelector" in n for n in gaps.notices), "scheduling means nothing here"
    exported = local_gaps(specs, {"TOKEN": "x", "FLAGS": "y"})
    assert exported.problems == [] and len(exported.notices) == 2

"""Pin on first sight (issue 13 #1 on a cluster): the init container reports the sha256 it
fetched, the operator keeps the first one a revision's pods report and renders it back into the
revision's fetch, and a pod that fetched other bytes is refused and named, never served silently.

The fetch runs for real against a loopback HTTP server; the operator's rule is fed pods as the
kubelet reports them (``status.initContainerStatuses[].state|lastState.terminated.message``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from test_local_pinning import Remote, remote  # noqa: F401 (the fixture)

from kaip.kube.operator.artifact_pins import (
    FetchReport,
    fetch_report,
    needs_pin,
    pin,
    pin_backends,
    served_digest,
)
from kaip.kube.operator.status import Observation, RevisionState, conditions_for
from kaip.plan import Plan, plan_workload, revision_id
from kaip.render.kube import Backend, render_manifests
from kaip.render.kube.artifacts import FETCH_CONTAINER, TERMINATION_LOG
from kaip.serving import fetch
from kaip.settings import Settings
from kaip.spec import Model

V1 = hashlib.sha256(b"weights v1").hexdigest()
V2 = hashlib.sha256(b"weights v2").hexdigest()
URI = "https://models.example.com/digits.onnx"


def model(uri: str = URI, **artifact: object) -> Model:
    return Model.model_validate(
        {
            "apiVersion": "kaip.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "digits"},
            "spec": {"owner": "ml", "artifact": {"uri": uri, "format": "onnx", **artifact}},
        }
    )


def pod(name: str, created: str, *states: tuple[str, int, Any]) -> dict[str, Any]:
    """A pod as the kubelet reports it: its fetch container's (state|lastState, exitCode,
    termination message) -- a message that is not a string is written as JSON."""
    status: dict[str, Any] = {"name": FETCH_CONTAINER}
    for where, code, message in states:
        text = message if isinstance(message, str) else json.dumps(message)
        status[where] = {"terminated": {"exitCode": code, "message": text}}
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"initContainerStatuses": [{"name": "other", "state": {}}, status]},
    }


def write_spec(tmp_path: Path, url: str, pinned: str = "") -> Path:
    spec = tmp_path / "kaip.yaml"
    sha256 = f", sha256: {pinned}" if pinned else ""
    spec.write_text(
        "apiVersion: kaip.dev/v1alpha1\nkind: Model\nmetadata: {name: digits}\n"
        f"spec: {{owner: ml, artifact: {{uri: '{url}', format: onnx{sha256}}}}}\n"
    )
    return spec


def test_the_fetch_reports_the_sha256_it_got_and_refuses_other_bytes_once_pinned(
    remote: Remote,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = write_spec(tmp_path, f"{remote.url}/digits.joblib")
    report = tmp_path / "termination-log"
    monkeypatch.setenv("KAIP_SERVING__ARTIFACT_CACHE_DIR", str(tmp_path / "pod1"))
    assert fetch.main([str(spec), "--model", "digits", "--report", str(report)]) == 0
    assert json.loads(report.read_text()) == {"sha256": V1}
    # the same bytes, verified against the pin, in a later pod (an empty cache)
    monkeypatch.setenv("KAIP_SERVING__ARTIFACT_CACHE_DIR", str(tmp_path / "pod2"))
    args = [str(spec), "--model", "digits", "--report", str(report), "--sha256", V1]
    assert fetch.main(args) == 0
    assert json.loads(report.read_text()) == {"sha256": V1}

    remote.body = b"weights v2"  # new bytes at the same URL; a pod of the old revision restarts
    monkeypatch.setenv("KAIP_SERVING__ARTIFACT_CACHE_DIR", str(tmp_path / "pod3"))
    assert fetch.main(args) == 2
    said = json.loads(report.read_text())
    assert (said["expected"], said["found"]) == (V1, V2)
    assert f"now has sha256 {V2}, but this revision was pinned to sha256 {V1}" in said["error"]
    assert len(report.read_bytes()) <= fetch.MAX_REPORT_BYTES + 1
    refusal = report.read_text()
    remote.body = b"weights v1"  # the URL serves the pinned bytes again: the retry is fetched anew
    assert fetch.main(args) == 0
    assert json.loads(report.read_text()) == {"sha256": V1}
    # what the operator makes of that pod's status
    failed = pod("digits-abc-3", "2026-11-30T10:00:03Z", ("lastState", 2, refusal))
    assert fetch_report(failed) == FetchReport(
        "digits-abc-3", "2026-11-30T10:00:03Z", expected=V1, found=V2
    )


def test_a_spec_that_pins_its_own_sha256_is_verified_against_it_not_the_operators(
    remote: Remote,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = write_spec(tmp_path, f"{remote.url}/digits.joblib", pinned=V1)
    report = tmp_path / "termination-log"
    monkeypatch.setenv("KAIP_SERVING__ARTIFACT_CACHE_DIR", str(tmp_path / "cache"))
    args = [str(spec), "--model", "digits", "--report", str(report), "--sha256", V2]
    assert fetch.main(args) == 0
    assert json.loads(report.read_text()) == {"sha256": V1}
    missing = spec.read_text().replace("digits.joblib", "gone.joblib")
    spec.write_text(missing)
    assert fetch.main(args) == 1
    assert "answered HTTP 404" in json.loads(report.read_text())["error"]


def test_a_bad_pin_argument_is_refused_by_the_parser(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        fetch.main([str(tmp_path), "--model", "digits", "--sha256", "ABC"])
    assert exited.value.code == 2


def test_what_a_pod_reported_is_read_from_its_status_and_anything_else_ignored() -> None:
    ok = pod("p1", "t1", ("state", 0, {"sha256": V1}))
    assert fetch_report(ok) == FetchReport("p1", "t1", sha256=V1)
    # restarted after a refused fetch: the waiting state has no message, the last one has
    crashed = pod("p2", "t2", ("lastState", 2, {"error": "x", "expected": V1, "found": V2}))
    assert fetch_report(crashed) == FetchReport("p2", "t2", expected=V1, found=V2)
    for unreadable in (
        pod("p3", "t3", ("state", 0, "")),  # kwok, or a kubelet that kept no message
        pod("p3", "t3", ("state", 0, "not json")),
        pod("p3", "t3", ("state", 0, {"sha256": "short"})),
        pod("p3", "t3", ("state", 0, {"sha256": V1, "pad": "x" * 5000})),  # past the kubelet's
        pod("p3", "t3", ("state", 1, {"error": "HTTP 404"})),  # failed, no digest to compare
        pod("p3", "t3", ("state", 0, [V1])),
        {"metadata": {"name": "p4"}},  # pending: no statuses yet
    ):
        assert fetch_report(unreadable) is None


def test_the_first_digest_seen_pins_the_revision_and_other_bytes_are_named() -> None:
    first = FetchReport("digits-a", "2026-11-30T10:00:00Z", sha256=V1)
    later = FetchReport("digits-b", "2026-11-30T10:00:09Z", sha256=V2)
    assert pin(None, [], "abc", URI).digest is None
    assert pin(None, [later, first], "abc", URI).digest == V1, "the oldest pod's is first"
    changed = pin(None, [later, first], "abc", URI).changed
    assert changed is not None
    assert f"pod digits-b fetched {URI} with sha256 {V2}" in changed
    assert f"pinned to sha256 {V1}, what its first pod fetched" in changed
    assert "kaip apply or kaip deploy pins them, or set artifact.sha256" in changed
    # once recorded, the record wins over whatever the pods say
    assert pin(V2, [first], "abc", URI).digest == V2
    assert pin(V1, [first], "abc", URI) == pin(V1, [], "abc", URI)
    refused = FetchReport("digits-c", "2026-11-30T10:01:00Z", expected=V1, found=V2)
    assert pin(V1, [refused], "abc", URI).changed is not None
    assert "its fetch refused them" in str(pin(V1, [refused], "abc", URI).changed)
    # a status that lost its record learns the pin back from a refused fetch
    assert pin(None, [refused], "abc", URI).digest == V1


def test_only_unpinned_remote_artifacts_are_pinned_on_first_sight() -> None:
    assert needs_pin(model())
    assert needs_pin(model("s3://models/digits.onnx"))
    assert not needs_pin(model(sha256=V1))
    assert not needs_pin(model("digits.onnx"))


def _backend(resource: Model) -> Backend:
    return Backend(plan_workload(resource, Settings(), "ml"), 100)


def test_the_operator_renders_the_pin_into_the_fetch_and_keeps_it_whatever_pods_say() -> None:
    listed: list[str] = []
    pods = [pod("digits-x", "t1", ("state", 0, {"sha256": V1}))]

    def list_pods(live: Any) -> list[dict[str, Any]]:
        listed.append(live.revision)
        return pods

    unpinned = _backend(model())
    revision = unpinned.workload.revision
    (found,), changed = pin_backends([unpinned], {}, list_pods)
    assert (found.workload.artifact_sha256, changed, listed) == (V1, None, [revision])
    assert found.workload.revision == revision == revision_id(model()), "the id stays the spec's"
    assert served_digest(found.workload) == V1
    (fetcher,) = _fetch_containers(found)
    assert fetcher["args"][-4:] == ["--report", TERMINATION_LOG, "--sha256", V1]
    assert fetcher["terminationMessagePath"] == TERMINATION_LOG

    # the record in the status wins, even over the oldest pod (a pod may be gone by now)
    recorded = {"revisions": [{"name": revision, "digest": V2}, {"name": "other"}, "junk"]}
    (kept,), changed = pin_backends([unpinned], recorded, list_pods)
    assert kept.workload.artifact_sha256 == V2 and changed is not None

    # a pod restarts and fetches new bytes: its fetch fails, naming both digests
    pods.append(pod("digits-y", "t2", ("lastState", 2, {"expected": V1, "found": V2})))
    status = {"revisions": [{"name": revision, "digest": V1}]}
    (held,), changed = pin_backends([unpinned], status, list_pods)
    assert held.workload.artifact_sha256 == V1
    assert changed is not None and "pod digits-y" in changed and V2 in changed

    pinned = _backend(model(sha256=V2))
    listed.clear()
    (same,), _ = pin_backends([pinned], {}, list_pods)
    assert same is pinned and listed == [], "a spec's own pin needs no pod"
    assert served_digest(same.workload) == V2
    assert "--sha256" not in _fetch_containers(same)[0]["args"]


def _fetch_containers(backend: Backend) -> list[dict[str, Any]]:
    plan = Plan((backend.workload,), Settings())
    rendered = render_manifests(plan, {backend.workload.key: [backend]})
    (deployment,) = [m for m in rendered if m["kind"] == "Deployment"]
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["initContainers"]
    return containers


def test_the_status_shows_each_revisions_digest_and_a_changed_artifact_as_degraded() -> None:
    state = RevisionState("abc", 100, replicas=1, ready_replicas=1, digest=V1)
    assert state.to_status()["digest"] == V1
    assert "digest" not in RevisionState("abc", 100, 1, 1).to_status()
    seen = Observation("Model", 1, revisions=(state,), artifact_changed="revision abc: pod p")
    degraded = [c for c in conditions_for(seen) if c.type == "Degraded"]
    assert [(c.status, c.reason, c.message) for c in degraded] == [
        ("True", "ArtifactChanged", "revision abc: pod p")
    ]

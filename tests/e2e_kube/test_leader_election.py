"""Leader election on a real kube-apiserver: the Lease rules, then two real operators.

First the :class:`~kaip.kube.operator.leader.LeaseElector` rules, each candidate with a clock of
its own that the test moves (so nothing waits): only one holder, no take-over before the Lease
expired by the candidate's own clock, a release hands over at once, a leader past its renew
deadline refuses to write.

Then the chart with ``replicas: 2``: two ``kaip operator`` processes under the chart's RBAC (as
in a pod, each with its own ``POD_NAME``), the leader SIGKILLed while a change waits. The
standby takes the Lease once it expired and acts on the change; the apiserver's audit log shows
every write of each replica (by its user agent), and no write of the second before the first was
dead. The takeover time is printed (``-s``), not asserted: bench/README.md quotes it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kube_harness import ControlPlane

from kaip.errors import KubeError
from kaip.kube.client import Session
from kaip.kube.operator.leader import LeaseElector, NotLeaderError, Timings

TIMINGS = Timings(lease_duration=15, renew_deadline=10, retry_period=2)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lease_namespace(kube_api: ControlPlane, api_namespace: str) -> str:
    return api_namespace


def _elector(plane: ControlPlane, namespace: str, name: str, who: str, clock: Clock) -> Any:
    session = Session.connect(plane.kubeconfig)
    return LeaseElector(session, namespace, name, who, TIMINGS, clock=clock)


def _lease(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(
        plane.kubectl("get", "lease", name, "-n", namespace, "-o", "json")
    )["spec"]
    return spec


def test_one_holder_and_no_takeover_before_expiry_by_the_candidates_own_clock(
    kube_api: ControlPlane, lease_namespace: str
) -> None:
    clock_a, clock_b = Clock(), Clock()
    a = _elector(kube_api, lease_namespace, "op", "a", clock_a)
    b = _elector(kube_api, lease_namespace, "op", "b", clock_b)
    assert a.try_acquire_or_renew() is True, "a free Lease is taken"
    assert b.try_acquire_or_renew() is False
    first = _lease(kube_api, lease_namespace, "op")
    assert first["holderIdentity"] == "a" and first["leaseTransitions"] == 0
    assert first["leaseDurationSeconds"] == 15

    clock_a.now += 2
    assert a.try_acquire_or_renew() is True, "the holder renews"
    renewed = _lease(kube_api, lease_namespace, "op")
    assert renewed["acquireTime"] == first["acquireTime"] != renewed["renewTime"]

    # a stops renewing (it died). b saw the record at its time 1000 (before the renewal) and
    # again, changed, now: the lease duration counts from when b saw it change.
    clock_b.now += 5
    assert b.try_acquire_or_renew() is False, "a renewed since b last looked"
    clock_b.now += 14.9
    assert b.try_acquire_or_renew() is False, "not expired by b's clock"
    clock_b.now += 0.2
    assert b.try_acquire_or_renew() is True, "expired: b takes it"
    taken = _lease(kube_api, lease_namespace, "op")
    assert taken["holderIdentity"] == "b" and taken["leaseTransitions"] == 1
    assert taken["acquireTime"] != first["acquireTime"]

    # a wakes up past its renew deadline: it must not write, and it finds b holding the Lease.
    clock_a.now += TIMINGS.renew_deadline
    with pytest.raises(NotLeaderError):
        a.check()
    assert a.try_acquire_or_renew() is False
    assert _lease(kube_api, lease_namespace, "op")["holderIdentity"] == "b"


def test_a_released_lease_is_taken_at_once(kube_api: ControlPlane, lease_namespace: str) -> None:
    clock = Clock()
    a = _elector(kube_api, lease_namespace, "handover", "a", clock)
    b = _elector(kube_api, lease_namespace, "handover", "b", Clock())
    assert a.try_acquire_or_renew() is True
    a.check()  # a holds it and renewed just now
    a.release()
    released = _lease(kube_api, lease_namespace, "handover")
    assert released["holderIdentity"] in ("", None)
    assert b.try_acquire_or_renew() is True, "no waiting for an expiry"
    with pytest.raises(NotLeaderError):
        a.check()


def test_candidates_racing_for_a_free_lease_produce_exactly_one_leader(
    kube_api: ControlPlane, lease_namespace: str
) -> None:
    for round_ in range(5):
        name = f"race-{round_}"
        electors = [_elector(kube_api, lease_namespace, name, f"c{i}", Clock()) for i in range(4)]
        start = threading.Barrier(len(electors))
        won: list[str] = []

        def attempt(
            elector: LeaseElector, start: threading.Barrier = start, won: list[str] = won
        ) -> None:
            start.wait()
            try:
                if elector.try_acquire_or_renew():
                    won.append(elector.identity)
            except KubeError:
                pass

        threads = [threading.Thread(target=attempt, args=(e,)) for e in electors]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(won) == 1, won
        assert _lease(kube_api, lease_namespace, name)["holderIdentity"] == won[0]


# -- two real operators --------------------------------------------------------------------

OPERATOR_USER = "system:serviceaccount:kaip-system:kaip-operator"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
MODEL = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {{name: {name}}}
spec:
  owner: ml
  artifact: {{uri: https://models.example.com/m.onnx, format: onnx}}
  resources: {{cpu: 100m, memory: 128Mi}}
  scaling: {{minReplicas: 1, maxReplicas: 1}}
"""


def _parse(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _audited_writes(plane: ControlPlane, since: float) -> list[dict[str, Any]]:
    """The operator account's writes since ``since`` (epoch seconds), from the audit log."""
    assert plane.audit_log is not None, "kube_cluster audits the operator's account"
    events: dict[str, dict[str, Any]] = {}
    for log in sorted(plane.audit_log.parent.glob(plane.audit_log.name + "*")):
        for line in log.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if (event.get("user") or {}).get("username") != OPERATOR_USER:
                continue
            if event.get("verb") not in WRITES:
                continue
            if _parse(event["requestReceivedTimestamp"]) < since:
                continue
            events[event["auditID"]] = event
    return sorted(events.values(), key=lambda e: e["requestReceivedTimestamp"])


@pytest.fixture
def two_operators(
    kube_cluster: ControlPlane, helm: Path, tmp_path: Path
) -> Iterator[tuple[Any, Any, str, ControlPlane]]:
    from test_operator import RELEASE_NAMESPACE, Operator, chart_account

    namespace = f"le-{uuid.uuid4().hex[:6]}"
    kube_cluster.kubectl("create", "namespace", namespace)
    account, kubeconfig = chart_account(kube_cluster, helm, tmp_path, namespace, "replicas=2")
    operators = []
    for who in ("op-a", "op-b"):
        operator = Operator(
            kubeconfig, namespace, "http://127.0.0.1:9", tmp_path / f"{who}.log",
            account=account, server=kube_cluster.server, identity=who,
            lease=(TIMINGS.lease_duration, TIMINGS.renew_deadline, TIMINGS.retry_period),
        )  # fmt: skip
        operators.append(operator)
    try:
        yield operators[0], operators[1], namespace, kube_cluster
    finally:
        for operator in operators:
            operator.stop()
        kube_cluster.kubectl(
            "delete", "lease", "kaip-operator", "-n", RELEASE_NAMESPACE, check=False
        )
        kube_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _holder(plane: ControlPlane) -> dict[str, Any]:
    out = plane.kubectl(
        "get", "lease", "kaip-operator", "-n", "kaip-system", "-o", "json", check=False
    )
    return dict(json.loads(out)["spec"]) if out.strip() else {}


def _wait(what: str, probe: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


def _deployment_of(plane: ControlPlane, namespace: str, model: str) -> bool:
    out = plane.kubectl(
        "get", "deployments", "-n", namespace, "-l", f"app.kubernetes.io/name={model}",
        "-o", "name",
    )  # fmt: skip
    return bool(out.strip())


def _apply(plane: ControlPlane, namespace: str, text: str, workdir: Path) -> None:
    path = workdir / f"m-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(text)
    plane.kubectl("apply", "-n", namespace, "-f", str(path))


def test_the_standby_takes_over_after_the_leader_is_killed_and_only_one_ever_writes(
    two_operators: tuple[Any, Any, str, ControlPlane], tmp_path: Path
) -> None:
    a, b, namespace, plane = two_operators
    started = time.time()
    a.start()
    _wait("op-a to lead", lambda: _holder(plane).get("holderIdentity") == "op-a")
    b.start()
    _wait("op-b to stand by", lambda: "waiting to lead" in b.text())
    _apply(plane, namespace, MODEL.format(name="first"), tmp_path)
    _wait("op-a to render the first Model", lambda: _deployment_of(plane, namespace, "first"))
    assert not _deployment_of(plane, namespace, "second")

    before = _holder(plane)
    assert before["holderIdentity"] == "op-a"
    a.kill()
    killed = time.time()
    last_renewal = _parse(_holder(plane)["renewTime"])  # op-a can renew no more
    _apply(plane, namespace, MODEL.format(name="second"), tmp_path)
    after = _wait("op-b to take the Lease", lambda: _holder(plane).get("holderIdentity") == "op-b"
                  and _holder(plane))  # fmt: skip
    _wait("op-b to render the second Model", lambda: _deployment_of(plane, namespace, "second"))
    acquired = _parse(after["acquireTime"])
    assert after["leaseTransitions"] == int(before.get("leaseTransitions") or 0) + 1
    assert acquired - last_renewal >= TIMINGS.lease_duration - 0.01, (
        "taken over before the Lease expired"
    )

    writes = [w for w in _audited_writes(plane, started) if w["objectRef"]["resource"] != "leases"]
    by = {
        who: [w for w in writes if f"({who})" in w.get("userAgent", "")] for who in ("op-a", "op-b")
    }
    assert len(by["op-a"]) + len(by["op-b"]) == len(writes), "every write is one replica's"
    assert by["op-a"], "the leader wrote"
    assert by["op-b"], "the new leader wrote"
    assert all(_parse(w["requestReceivedTimestamp"]) < acquired for w in by["op-a"]), (
        "the old leader wrote after the new one took over"
    )
    assert all(_parse(w["requestReceivedTimestamp"]) >= acquired - 0.001 for w in by["op-b"]), (
        "the standby wrote before it led"
    )
    lease_writes = [w for w in _audited_writes(plane, started) if w["objectRef"]["resource"]
                    == "leases" and "(op-b)" in w.get("userAgent", "")]  # fmt: skip
    assert all(_parse(w["requestReceivedTimestamp"]) >= acquired - 0.001 for w in lease_writes), (
        "the standby only read the Lease until it expired"
    )
    print(
        f"\nleader killed -> standby leading: {acquired - killed:.1f} s "
        f"(lease {TIMINGS.lease_duration:.0f} s, retry {TIMINGS.retry_period:.0f} s); "
        f"writes: op-a {len(by['op-a'])}, op-b {len(by['op-b'])}"
    )

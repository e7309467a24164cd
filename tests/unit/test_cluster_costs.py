"""kaip cost --prometheus: Prometheus's answers about each replica paired into the kernel's
windows (kaip.kube.operator.costs); a real Prometheus: tests/e2e_local/test_observability.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from kaip.errors import MetricsError
from kaip.kube.operator.costs import ASSUMED_VCPUS, cluster_windows, queries

AT = 10_000.0


def vector(*samples: tuple[dict[str, str], float]) -> dict[str, Any]:
    return {"resultType": "vector",
            "result": [{"metric": m, "value": [AT, str(v)]} for m, v in samples]}  # fmt: skip


A = {"job": "pods", "instance": "10.0.0.1:8080"}
B = {"job": "pods", "instance": "10.0.0.2:8080"}
IDENT_A = {**A, "namespace": "ml", "pod": "digits-a", "model": "digits", "revision": "r1",
           "owner": "team-a"}  # fmt: skip
IDENT_B = {**IDENT_A, **B, "pod": "digits-b", "revision": "r2"}


def answers(reserved: bool) -> dict[str, dict[str, Any]]:
    promql = queries(600, "ml")
    return {
        promql["identity"]: vector((IDENT_A, 1), (IDENT_B, 1)),
        promql["requests"]: vector((A, 100), (B, 50)),
        promql["busy"]: vector((A, 20), (B, 20)),
        promql["cpu"]: vector((A, 30), (B, 12)),
        promql["memory"]: vector((A, 2**30), (B, 2**29)),
        promql["start"]: vector((A, AT - 3600), (B, AT - 120)),  # b started 2 min ago
        promql["seen"]: vector((A, AT - 1), (B, AT - 60)),  # and was last scraped 1 min ago
        promql["reserved"]: vector(({"namespace": "ml", "pod": "digits-a"}, 2)) if reserved
        else vector(),
    }  # fmt: skip


def test_each_replica_becomes_a_window_over_what_prometheus_saw_of_it() -> None:
    asked = answers(reserved=True)

    def query(promql: str, at: float) -> Mapping[str, Any]:
        assert at == AT and 'namespace="ml"' in promql
        return asked[promql]

    seen = cluster_windows(query, 600, AT, "ml")
    a, b = seen.windows
    assert (a.resource, a.revision, a.owner, a.replica) == ("digits", "r1", "team-a", "digits-a")
    assert (a.seconds, a.cpu_seconds, a.busy_seconds, a.requests) == (599, 30, 20, 100)
    assert a.memory_gb == 1.0 and a.vcpus == 2.0 and seen.reserved_cpus_known
    assert b.seconds == 60 and b.vcpus == ASSUMED_VCPUS  # from its start to its last scrape
    unknown = cluster_windows(lambda q, _: answers(reserved=False)[q], 600, AT, "ml")
    assert not unknown.reserved_cpus_known and unknown.windows[0].vcpus == ASSUMED_VCPUS


def test_queries_read_the_pods_own_metrics_over_the_window() -> None:
    promql = queries(3600, None)
    assert promql["requests"] == "sum by (job, instance) (increase(kaip_requests_total[3600s]))"
    assert "kaip_predict_duration_seconds_sum[3600s]" in promql["busy"]
    assert promql["seen"].endswith("[3600s:8s]))")  # at most 500 points a series
    assert 'kube_pod_container_resource_requests{resource="cpu"}' in promql["reserved"]


def test_a_window_out_of_bounds_is_refused() -> None:
    with pytest.raises(MetricsError, match="give 1 s to 31 days"):
        cluster_windows(lambda q, _: {}, 40 * 86400, AT)

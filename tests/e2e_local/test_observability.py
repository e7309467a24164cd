"""``kaip up``'s signals end to end: one trace per request from the gateway through the replica's
server, batch and predict spans to a real OpenTelemetry Collector (a retried request's two
attempts in one trace), the gateway's ``GET /metrics`` scraped, and a real Prometheus scraping
the gateway and the replicas answering PromQL for the cost per 1,000 requests by revision."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import httpx
import pytest
from local_platform import INFER_BODY, Load, LocalPlatform, model_spec, wait_for
from otel_collector import CLIENT, SERVER, Span, otel_collector
from prometheus_client.parser import text_string_to_metric_families
from prometheus_process import prometheus

pytestmark = pytest.mark.slow


def infer_body(first: float) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                        "data": [first, 2, 3, 4]}]}  # fmt: skip


BURST = 30
"""Requests sent without a ``traceparent`` at once: more than the gateway samples in a second."""


def one_linked_trace(spans: list[Span]) -> Span:
    """The gateway's SERVER span of a trace whose every other span hangs off a span of the
    same trace (the parent ids link them); fails naming what does not."""
    [server] = [s for s in spans if s.kind == SERVER and s.service == "kaip-gateway"]
    ids = {s.span_id for s in spans}
    loose = [s for s in spans if s is not server and s.parent_span_id not in ids]
    assert not loose, f"spans not linked into the trace: {loose}"
    return server


def test_one_trace_per_request_reaches_a_real_collector_a_retry_included_and_metrics_scraped(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    with otel_collector(platform.workdir) as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")  # export within 0.2 s
        spec = model_spec(entrypoint="model:DiesOnce", min_replicas=2, max_replicas=2)
        platform.up(platform.write_spec(spec))

        def ready_replicas() -> int:
            return sum(r["health"] == "ready" for r in platform.resource("echo")["replicas"])

        wait_for(lambda: ready_replicas() == 2, "two ready replicas")
        # The replicas start no trace of their own: the gateway decides for every request.
        for replica in platform.resource("echo")["replicas"]:
            environ = Path(f"/proc/{replica['pid']}/environ").read_bytes().split(b"\0")
            assert b"KAIP_TRACE_ROOTS=off" in environ, replica
        # Three requests with the caller's traceparent (sampled), the second one killing the
        # replica it reaches first (the gateway retries it on the other), then BURST without:
        # the first ones sampled (the gateway's default keeps up to 10 a second), the others
        # not, and of those the replicas record nothing either.
        traces = {first: uuid.uuid4().hex for first in (1.0, 13.0, 2.0)}
        with httpx.Client(timeout=60, trust_env=False) as client:
            for first, trace_id in traces.items():
                answer = client.post(
                    f"{platform.url}/v2/models/echo/infer", json=infer_body(first),
                    headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
                )  # fmt: skip
                assert answer.status_code == 200, answer.text
                assert answer.json()["outputs"][0]["data"][0] == first * 2
                if first == 1.0:
                    # Exported before the next request may kill the replica that answered it:
                    # its spans wait up to OTEL_BSP_SCHEDULE_DELAY in the replica's batch queue.
                    plain = collector.wait_for(trace_id, 5)
            for _ in range(BURST):
                assert client.post(f"{platform.url}/v2/models/echo/infer",
                                   json=INFER_BODY).status_code == 200  # fmt: skip
        retried = collector.wait_for(traces[13.0], 6)
        collector.wait_for(traces[2.0], 5)
        seen: list[tuple[int, int]] = []

        def settled() -> bool:
            """Five server spans or more, and as many as replica ones, for a whole second
            (five times the export delay): the burst's sampled traces are in too."""
            spans = collector.spans()
            servers = sum(s.kind == SERVER and s.service == "kaip-gateway" for s in spans)
            seen.append((servers, sum(s.name == "kaip.infer" for s in spans)))
            return servers >= 5 and len(seen) > 10 and len(set(seen[-11:])) == 1

        wait_for(settled, "the gateway's server spans in the Collector's file, then no more")
        for root in [s for s in collector.spans() if s.kind == SERVER]:  # whole, not in flight:
            # a replica ends kaip.infer after its answer, so its export can trail the gateway's
            collector.wait_for(root.trace_id, 6 if root.trace_id == traces[13.0] else 5)
        scraped = httpx.get(f"{platform.url}/metrics", timeout=30, trust_env=False)

    # One trace per sampled request: a gateway SERVER span in a trace of its own, each trace
    # linked whole; no trace (and no replica span) for a request the gateway did not sample.
    everything = collector.spans()
    by_trace: dict[str, list[Span]] = {}
    for span in everything:
        by_trace.setdefault(span.trace_id, []).append(span)
    servers = [s for s in everything if s.kind == SERVER and s.service == "kaip-gateway"]
    assert 5 <= len(servers) < 3 + BURST and len({s.trace_id for s in servers}) == len(servers)
    for spans in by_trace.values():
        one_linked_trace(spans)
    infers = [s for s in everything if s.name == "kaip.infer"]
    assert len(infers) == len(servers), (len(infers), len(servers))

    server = one_linked_trace(plain)
    assert server.parent_span_id == "b7ad6b7169203331"  # the caller's span
    [attempt] = [s for s in plain if s.kind == CLIENT]
    [infer] = [s for s in plain if s.name == "kaip.infer"]
    [batch] = [s for s in plain if s.name == "kaip.batch"]
    [predict] = [s for s in plain if s.name == "kaip.predict"]
    assert attempt.parent_span_id == server.span_id and attempt.service == "kaip-gateway"
    assert infer.parent_span_id == attempt.span_id and infer.service == "kaip-serving"
    assert batch.parent_span_id == infer.span_id
    assert predict.parent_span_id == batch.span_id
    assert server.attributes["kaip.cost.usd"] > 0 and server.attributes["kaip.energy.joules"] > 0

    # The retried request: both attempts under its one SERVER span; the first one failed (its
    # replica died before answering), the second one's replica spans hang off it.
    server = one_linked_trace(retried)
    attempts = [s for s in retried if s.kind == CLIENT]
    # Two attempts, or more when a retry reached the dead replica before the gateway saw it die.
    assert len(attempts) >= 2 and {a.parent_span_id for a in attempts} == {server.span_id}
    [infer] = [s for s in retried if s.name == "kaip.infer"]
    [answered] = [a for a in attempts if a.span_id == infer.parent_span_id]
    failed = [a for a in attempts if a is not answered]
    assert all(a.error for a in failed) and not answered.error, attempts
    assert failed[0].attributes.get("kaip.replica") != answered.attributes.get("kaip.replica")

    assert scraped.status_code == 200
    families = list(text_string_to_metric_families(scraped.text))

    def values(name: str, **labels: str) -> list[float]:
        return [
            sample.value
            for family in families
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ]

    assert values(
        "kaip_gateway_requests_total", resource="echo", owner="e2e", status_class="2xx"
    ) == [3.0 + BURST]
    # One retry per failed attempt of the request whose replica died, as its trace showed.
    assert values("kaip_gateway_retries_total", resource="echo", owner="e2e") == [len(failed)]
    # The replica that died is started again: one or two are ready when scraped.
    assert 1 <= sum(values("kaip_replicas", resource="echo", owner="e2e", phase="ready")) <= 2
    for counter in ("kaip_cost_usd_total", "kaip_energy_joules_total", "kaip_co2e_grams_total"):
        [value] = values(counter, resource="echo", owner="e2e")
        assert value > 0, counter


COST_PER_1K_BY_REVISION = (
    '1000 * sum by (revision) (kaip_cost_usd_total{job="kaip-gateway",resource="echo"})'
    ' / sum by (revision) (kaip_gateway_requests_total{job="kaip-gateway",resource="echo"})'
)
REPLICA_REQUESTS_BY_REVISION = (
    'sum by (revision) (kaip_requests_total{job="kaip-replicas",model="echo",status="200"})'
)


def promql_by_revision(url: str, query: str, revisions: int) -> dict[str, float]:
    """The instant answer of ``query`` by revision, once it has ``revisions`` series (after the
    first scrapes)."""
    answer: dict[str, float] = {}

    def asked() -> bool:
        got = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=30,
                        trust_env=False).json()  # fmt: skip
        assert got["status"] == "success", got
        answer.clear()
        rows = got["data"]["result"]
        answer.update({row["metric"]["revision"]: float(row["value"][1]) for row in rows})
        return len(answer) == revisions

    wait_for(asked, f"Prometheus to answer {query!r} for {revisions} revisions", limit=120)
    return answer


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def test_a_canary_doing_twice_the_work_costs_twice_and_cpu_adds_up(
    platform: LocalPlatform,
) -> None:
    steps = "[{weight: 50, pauseSeconds: 3600}]"  # stays at 50/50 for the test
    spec = platform.write_spec(model_spec(entrypoint="model:SpinLong", steps=steps))
    platform.up(spec)
    stable = platform.resource("echo")["stable"]
    platform.write_spec(model_spec(entrypoint="model:SpinLongTwice", steps=steps))
    assert platform.cli("deploy", str(spec)).returncode == 0
    wait_for(
        lambda: (
            len(platform.resource("echo")["weights"]) == 2
            and 50 in platform.resource("echo")["weights"].values()
            and len([r for r in platform.resource("echo")["replicas"] if r["health"] == "ready"])
            == 2
        ),
        "the canary at 50 % with a ready replica",
    )
    with httpx.Client(timeout=60, trust_env=False) as client:
        for _ in range(120):
            answer = client.post(f"{platform.url}/v2/models/echo/infer", json=INFER_BODY)
            assert answer.status_code == 200, answer.text
    by_revision = json.loads(platform.cli("cost", "--by", "revision", "-o", "json").stdout)
    rows = {row["revision"]: row for row in by_revision["rows"]}
    canary = next(r for r in rows if r != stable)
    assert rows[stable]["requests"] > 20 and rows[canary]["requests"] > 20, rows
    ratio = rows[canary]["cost_per_1k_requests_usd"] / rows[stable]["cost_per_1k_requests_usd"]
    print(f"\ncanary / stable cost per 1,000 requests: {ratio:.3f}")
    # 2x +- 25 %: twice the CPU work per request. Under load 8-10 (other engineers' tests) the
    # CPU the OS charges per request drifts: 1.566 and 1.681 were seen beside 1.88-2.17 in calm
    # runs; a canary doing the same work as stable (1x) still fails this by far.
    assert 1.5 <= ratio <= 2.5
    assert rows[canary]["method"] == "estimated"

    # A real Prometheus scraping the gateway and both replicas: PromQL prices each revision.
    gateway = platform.url.removeprefix("http://")
    ports = [f"127.0.0.1:{r['port']}" for r in platform.resource("echo")["replicas"]]
    with prometheus(platform.workdir, gateway, ports, {"owner": "e2e"}) as url:
        per_1k = promql_by_revision(url, COST_PER_1K_BY_REVISION, 2)
        served = promql_by_revision(url, REPLICA_REQUESTS_BY_REVISION, 2)
        # kaip cost --prometheus: the same report from the replicas' own metrics, as on a
        # cluster; only what Prometheus saw counts, so a second round of requests under it.
        with httpx.Client(timeout=60, trust_env=False) as client:
            for _ in range(80):
                answer = client.post(f"{platform.url}/v2/models/echo/infer", json=INFER_BODY)
                assert answer.status_code == 200, answer.text
        total = 120 + 80
        seen = f'sum(kaip_requests_total{{job="kaip-replicas",model="echo"}}) >= {total}'
        wait_for(lambda: bool(httpx.get(f"{url}/api/v1/query", params={"query": seen},
                                        timeout=30, trust_env=False).json()["data"]["result"]),
                 "Prometheus to scrape the second round")  # fmt: skip
        asked = platform.cli("cost", "--prometheus", url, "--by", "revision", "--since", "10m",
                             "-o", "json")  # fmt: skip
        owners = platform.cli("cost", "--prometheus", url, "--by", "owner", "--since", "10m")
    assert asked.returncode == 0, asked.stderr
    cluster = {row["revision"]: row for row in json.loads(asked.stdout)["rows"]}
    assert set(cluster) == {stable, canary}
    cluster_ratio = (cluster[canary]["cost_per_1k_requests_usd"]
                     / cluster[stable]["cost_per_1k_requests_usd"])  # fmt: skip
    print(
        f"kaip cost --prometheus: canary / stable {cluster_ratio:.3f}, "
        f"requests {[cluster[r]['requests'] for r in (stable, canary)]}"
    )
    # Busy time here is the runtimes' predict wall time over the ~80 requests Prometheus saw;
    # on a loaded machine (load 7-10) it came out 1.45x for twice the CPU work per request, so
    # this asks for a clearly dearer canary; 2x +- 15 % is held on kaip up's report above.
    assert 1.3 <= cluster_ratio <= 2.6
    # increase() over what Prometheus saw: the second round's 80, give or take its extrapolation
    assert 70 <= cluster[stable]["requests"] + cluster[canary]["requests"] <= 100
    assert cluster[canary]["method"] == "estimated" and cluster[canary]["cpu_seconds"] > 0
    assert owners.returncode == 0 and "e2e" in owners.stdout and "$/1k req" in owners.stdout
    promql_ratio = per_1k[canary] / per_1k[stable]
    print(f"PromQL cost per 1,000 requests: {per_1k} (canary / stable {promql_ratio:.3f})")
    assert 1.5 <= promql_ratio <= 2.5  # as the report's ratio above
    assert per_1k[stable] == pytest.approx(rows[stable]["cost_per_1k_requests_usd"], rel=0.15)
    assert served == {stable: rows[stable]["requests"], canary: rows[canary]["requests"]}
    low, high = rows[canary]["energy_joules_band"]
    assert low <= rows[canary]["energy_joules"] <= high

    replicas = {r["id"]: r["pid"] for r in platform.resource("echo")["replicas"]}
    report = json.loads(platform.cli("cost", "--by", "replica", "-o", "json").stdout)
    measured = sum(cpu_seconds(pid) for pid in replicas.values())
    attributed = sum(r["cpu_seconds"] + r["idle"]["cpu_seconds"] for r in report["rows"]
                     if r["replica"] in replicas)  # fmt: skip
    print(f"CPU seconds: attributed + idle {attributed:.2f}, measured {measured:.2f}")
    assert attributed == pytest.approx(measured, rel=0.05)
    table = platform.cli("cost", "--by", "model")
    assert table.returncode == 0 and "echo" in table.stdout and "$/1k req" in table.stdout

    # kaip up is younger than an hour: --since 1h covers all of it, and says how long that is.
    now = json.loads(platform.cli("cost", "--by", "revision", "-o", "json").stdout)
    rows = {row["revision"]: row for row in now["rows"]}  # with the second round
    hour = json.loads(
        platform.cli("cost", "--by", "revision", "--since", "1h", "-o", "json").stdout
    )
    assert hour["since_seconds"] == 3600 and 0 < hour["covered_seconds"] < 3600
    assert {r["revision"]: r["requests"] for r in hour["rows"]} == {
        r: rows[r]["requests"] for r in rows
    }
    bad = platform.cli("cost", "--since", "an hour")
    assert bad.returncode == 2 and "--since" in bad.stderr

    # PATHS: only the resources those specs define.
    mine = json.loads(platform.cli("cost", str(spec), "--by", "revision", "-o", "json").stdout)
    assert {r["revision"]: r["requests"] for r in mine["rows"]} == {
        r: rows[r]["requests"] for r in rows
    }
    other = spec.parent / "other.yaml"
    other.write_text(model_spec(name="other"))
    assert json.loads(platform.cli("cost", str(other), "-o", "json").stdout)["rows"] == []
    (spec.parent / "empty.yaml").write_text("")
    empty = platform.cli("cost", str(spec.parent / "empty.yaml"))
    assert empty.returncode == 2 and "empty.yaml:1:1: file is empty" in empty.stderr


def test_the_cost_gate_promotes_a_same_cost_canary_and_rolls_back_one_costing_4x(
    platform: LocalPlatform,
) -> None:
    steps = "[{weight: 50, pauseSeconds: 5}, {weight: 100, pauseSeconds: 2}]"

    def spec_of(entrypoint: str) -> Path:
        # 40 requests of each revision since the canary's first step before the gate judges: a
        # request that waits for a CPU on a loaded machine keeps its replica busy longer, and
        # the fewer requests, the more a few such waits tip the average (on 20, judged against
        # stable's whole life, this same-cost canary was once rolled back at 1.67x).
        return platform.write_spec(
            model_spec(entrypoint=entrypoint, steps=steps, min_requests=40, max_cost_ratio=1.5)
        )

    spec = spec_of("model:Spin")
    platform.up(spec)
    load = Load(f"{platform.url}/v2/models/echo/infer", workers=2).start()
    try:
        wait_for(lambda: load.counts()[0] >= 30, "traffic on the stable revision")

        def finished(count: int) -> bool:
            history = platform.rollouts("echo")
            return len(history) == count and history[0]["status"] != "running"

        spec_of("model:SpinV2")  # the same work per request, another answer
        assert platform.cli("deploy", str(spec)).returncode == 0
        wait_for(lambda: finished(1), "the same-cost canary's rollout to end", limit=240)
        same = platform.rollouts("echo")[0]
        promoted = platform.resource("echo")["stable"]

        spec_of("model:SpinFourTimes")  # four times the work per request
        assert platform.cli("deploy", str(spec)).returncode == 0
        wait_for(lambda: finished(2), "the 4x canary's rollout to end", limit=240)
        dear = platform.rollouts("echo")[0]
    finally:
        _, failed = load.stop()
    print(f"\nsame cost: {same['reason']}\n4x: {dear['reason']}")
    assert dear["status"] == "rolled_back", dear
    assert "over maxCostRatio 1.5" in dear["reason"] and "x stable's $" in dear["reason"]
    assert same["status"] == "promoted", same
    assert "maxCostRatio 1.5" in same["verdicts"][-1]["reason"]  # the evidence, passed
    assert platform.resource("echo")["stable"] == promoted
    assert failed == 0


def test_kaip_profile_of_a_replica_under_load_shows_its_predict_path(
    platform: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Beside it, prices per owner: a second Model whose owner pays 100x for CPU and RAM.
    prices = tmp_path / "prices.yaml"
    prices.write_text("owners: {dear-team: {cpuCoreHourUsd: 3.1611, ramGbHourUsd: 0.4237}}\n")
    monkeypatch.setenv("KAIP_COST_PRICES_FILE", str(prices))
    dear = model_spec(name="dear", entrypoint="model:Spin").replace(
        "owner: e2e", "owner: dear-team"
    )
    spec = platform.write_spec(model_spec(entrypoint="model:Spin"))
    platform.up(spec, platform.write_spec(dear, "dear.yaml"))
    [replica] = platform.resource("echo")["replicas"]
    endpoint = f"http://127.0.0.1:{replica['port']}/_kaip/profile"
    refused = httpx.post(endpoint, params={"seconds": 1}, timeout=30, trust_env=False)
    assert refused.status_code == 401 and "KAIP_PROFILE_TOKEN" in refused.json()["error"]
    wrong = httpx.post(endpoint, headers={"Authorization": "Bearer nope"}, timeout=30,
                       trust_env=False)  # fmt: skip
    assert wrong.status_code == 401
    load = Load(f"{platform.url}/v2/models/echo/infer").start()
    try:
        wait_for(lambda: load.counts()[0] >= 5, "traffic on the replica")
        out = tmp_path / "echo.speedscope.json"
        result = platform.cli("profile", "echo", "--seconds", "3", "--output", str(out))
        screen = platform.cli("top", "--iterations", "1", "--interval", "1")
    finally:
        ok, failed = load.stop()
    assert result.returncode == 0, result.stderr
    assert failed == 0 and ok > 5
    doc = json.loads(out.read_text())
    hottest = [frame for frame, _ in doc["kaip"]["top_self"][:3]]
    assert any(frame.startswith("Spin.predict (") for frame in hottest), doc["kaip"]
    names = {frame["name"] for frame in doc["shared"]["frames"]}
    assert "Spin.predict" in names and doc["profiles"][0]["type"] == "sampled"
    assert "Spin.predict" in result.stdout
    assert screen.returncode == 0, screen.stderr
    assert "echo" in screen.stdout and "req/s" in screen.stdout and "1/1" in screen.stdout

    with httpx.Client(timeout=60, trust_env=False) as client:
        for _ in range(20):
            answer = client.post(f"{platform.url}/v2/models/dear/infer", json=INFER_BODY)
            assert answer.status_code == 200, answer.text
    owners = json.loads(platform.cli("cost", "--by", "owner", "-o", "json").stdout)
    per_1k = {row["owner"]: row["cost_per_1k_requests_usd"] for row in owners["rows"]}
    print(f"\ncost per 1,000 requests by owner: {per_1k}")
    assert per_1k["dear-team"] > 10 * per_1k["e2e"]  # the same work per request, 100x prices
    assert owners["price_overrides"]["source"] == str(prices)
    assert "price overrides: " in platform.cli("cost", "--by", "owner").stdout

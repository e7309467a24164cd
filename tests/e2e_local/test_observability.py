"""``kaip up``'s signals end to end: one trace from the gateway through the replica's server,
batch and predict spans to a real OTLP receiver, and the gateway's ``GET /metrics`` scraped."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import pytest
from local_platform import INFER_BODY, Load, LocalPlatform, model_spec, wait_for
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parents[1] / "contract"))  # the shared OTLP receiver
from otlp_receiver import serve_otlp

pytestmark = pytest.mark.slow


def test_one_trace_runs_gateway_replica_batch_predict_and_metrics_are_scraped(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    with serve_otlp() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")  # export within 0.2 s
        platform.up(platform.write_spec(model_spec()))
        answer = httpx.post(
            f"{platform.url}/v2/models/echo/infer",
            json=INFER_BODY,
            headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
            timeout=60,
            trust_env=False,
        )
        assert answer.status_code == 200, answer.text
        spans = receiver.wait_for(trace_id, 5)
        scraped = httpx.get(f"{platform.url}/metrics", timeout=30, trust_env=False)

    by_name: dict[str, list[object]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    [server] = [s for s in by_name["POST"] if s.kind == s.SPAN_KIND_SERVER]  # type: ignore[attr-defined]
    [attempt] = [s for s in by_name["POST"] if s.kind == s.SPAN_KIND_CLIENT]  # type: ignore[attr-defined]
    [infer] = by_name["kaip.infer"]
    [batch] = by_name["kaip.batch"]
    [predict] = by_name["kaip.predict"]
    assert server.parent_span_id.hex() == "b7ad6b7169203331"  # type: ignore[attr-defined]
    assert attempt.parent_span_id == server.span_id  # type: ignore[attr-defined]
    assert infer.parent_span_id == attempt.span_id  # type: ignore[attr-defined]
    assert batch.parent_span_id == infer.span_id  # type: ignore[attr-defined]
    assert predict.parent_span_id == batch.span_id  # type: ignore[attr-defined]
    attributes = {a.key: a.value.double_value for a in server.attributes}  # type: ignore[attr-defined]
    assert attributes["kaip.cost.usd"] > 0 and attributes["kaip.energy.joules"] > 0

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
    ) == [1.0]
    assert values("kaip_replicas", resource="echo", owner="e2e", phase="ready") == [1.0]
    for counter in ("kaip_cost_usd_total", "kaip_energy_joules_total", "kaip_co2e_grams_total"):
        [value] = values(counter, resource="echo", owner="e2e")
        assert value > 0, counter


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
    assert 1.7 <= ratio <= 2.3  # 2x +- 15 %
    assert rows[canary]["method"] == "estimated"
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
        text = model_spec(entrypoint=entrypoint, steps=steps, min_requests=20)
        budget = "gates: {maxErrorRate: 0.05, minRequests: 20, maxCostRatio: 1.5}"
        return platform.write_spec(text.replace("gates: {maxErrorRate: 0.05, minRequests: 20}",
                                                budget))  # fmt: skip

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
    platform: LocalPlatform, tmp_path: Path
) -> None:
    platform.up(platform.write_spec(model_spec(entrypoint="model:Spin")))
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
        result = platform.cli("profile", "echo", "--seconds", "3", "-o", str(out))
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

"""The TTFT gate through a real ``kaip up`` (issue 17, must-show: "a canary whose revision doubles
TTFT is rolled back by the TTFT gate").

examples/tiny-lm's model, with a pause before its first token set in its file (``delay_s``): the
stable revision waits 0.15 s, a retrained one 0.3 s. Streamed chat requests go through the gateway
while ``kaip deploy --wait`` walks the canary; the controller reads both revisions' GenAI
histograms from their replicas' ``/metrics`` and :func:`kaip.policy.rollout` judges the p95
against ``maxP95TimeToFirstTokenMs: 350``. With the GenAI semantic conventions' TTFT buckets
(..., 0.1, 0.25, 0.5 s, ...) a 0.15 s first token reads as a p95 of 242.5 ms and 0.3 s as 487.5
ms (:mod:`kaip.policy.genai`), so the machine's load has ~100 ms of room on the stable side
before the numbers move. Timing is never asserted beyond that.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest
from local_platform import Load, LocalPlatform, wait_for
from prometheus_process import prometheus

from kaip.kube.operator.metrics import PrometheusMetrics
from kaip.local.controller.genai_evidence import GenAIWindow, ReplicaHistograms, parse

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DELAYED = '''

class Delayed(TinyLM):
    """TinyLM, pausing before its first token as a slower engine would."""

    delay_s = 0.15

    def generate(self, prompt, **params):  # type: ignore[no-untyped-def]
        import time

        time.sleep(self.delay_s)
        yield from super().generate(prompt, **params)
'''
SPEC = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: tiny-lm}
spec:
  owner: e2e
  artifact: {uri: model.py, format: python, entrypoint: "model:Delayed", trust: true}
  serve: {protocols: [openai]}
  scaling: {minReplicas: 1, maxReplicas: 1, targetConcurrency: 50}
  rollout:
    steps: [{weight: 50, pauseSeconds: 1}, {weight: 100, pauseSeconds: 1}]
    gates: {maxErrorRate: 0.05, minRequests: 10, maxP95TimeToFirstTokenMs: 350}
"""
CHAT = {
    "model": "tiny-lm",
    "messages": [{"role": "user", "content": "the sea and the river"}],
    "max_tokens": 8,
    "stream": True,
}
GATE = re.compile(r"p95 time to first token (\d+\.\d) ms exceeds maxP95TimeToFirstTokenMs 350")
PASSED = re.compile(r", p95 time to first token (\d+\.\d) ms\)")


def write_model(platform: LocalPlatform) -> Path:
    """examples/tiny-lm's model with :data:`DELAYED` appended, and :data:`SPEC`."""
    spec_dir = platform.spec_dir
    spec_dir.mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "tiny-lm" / "model.py", spec_dir / "model.py")
    with (spec_dir / "model.py").open("a") as model:
        model.write(DELAYED)
    spec = spec_dir / "kaip.yaml"
    spec.write_text(SPEC)
    return spec


def set_delay(spec_dir: Path, delay_s: float, note: str) -> None:
    """Retrain: the same model with another pause before its first token (a new revision)."""
    model = spec_dir / "model.py"
    text = re.sub(r"delay_s = .*", f"delay_s = {delay_s}  # {note}", model.read_text())
    model.write_text(text)


def test_a_canary_doubling_ttft_is_rolled_back_by_the_ttft_gate_and_an_equal_one_promoted(
    platform: LocalPlatform,
) -> None:
    spec = write_model(platform)
    spec_dir = platform.spec_dir
    platform.up(spec)
    stable = platform.resource("tiny-lm")["stable"]
    load = Load(f"{platform.url}/v1/chat/completions", workers=2, body=CHAT).start()
    wait_for(lambda: load.counts()[0] >= 10, "streamed chat on the stable revision")

    set_delay(spec_dir, 0.3, "twice the time to first token")
    slow = platform.cli("deploy", str(spec), "--wait", "--timeout", "5m")
    assert slow.returncode == 4, slow.stdout + slow.stderr
    assert GATE.search(slow.stderr), slow.stderr
    (rolled,) = platform.rollouts("tiny-lm")
    assert rolled["status"] == "rolled_back"
    reason = rolled["verdicts"][-1]["reason"]
    found = GATE.fullmatch(reason)
    assert found is not None, reason
    assert float(found.group(1)) > 350  # the canary's own p95, not a stand-in
    assert platform.resource("tiny-lm")["stable"] == stable

    set_delay(spec_dir, 0.15, "the same time to first token, retrained")
    same = platform.cli("deploy", str(spec), "--wait", "--timeout", "5m")
    _, failed = load.stop()
    assert same.returncode == 0, same.stdout + same.stderr
    assert failed == 0, load.failures[:5]
    promoted = platform.rollouts("tiny-lm")[0]
    assert promoted["status"] == "promoted", promoted
    reasons = [v["reason"] for v in promoted["verdicts"]]
    judged = [PASSED.search(r) for r in reasons]
    assert all(judged), reasons  # every step judged the canary's p95, within the gate
    assert all(float(m.group(1)) <= 350 for m in judged if m), reasons
    assert platform.resource("tiny-lm")["stable"] == promoted["to_revision"] != stable


def test_the_operators_promql_reads_the_p95_kaip_up_reads_from_a_real_prometheus(
    platform: LocalPlatform,
) -> None:
    """The cluster's evidence for the same gate: a real Prometheus scrapes the replica (labelled
    with a namespace, as a PodMonitor does) and the operator's PromQL
    (:class:`~kaip.kube.operator.metrics.PrometheusMetrics`) answers the p95 that kaip up computes
    from the replica's /metrics over the same requests."""
    platform.up(write_model(platform))
    model = platform.resource("tiny-lm")
    revision = model["stable"]
    (port,) = [r["port"] for r in model["replicas"] if r.get("port")]
    replica = f"http://127.0.0.1:{port}"
    chat = {**CHAT, "stream": False}
    gateway = platform.url.removeprefix("http://")
    selector = f'{{namespace="e2e",model="tiny-lm",revision="{revision}"}}'

    def seen(at_least: int) -> bool:
        query = f"sum(gen_ai_server_time_to_first_token_seconds_count{selector}) >= {at_least}"
        answer = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=30,
                           trust_env=False).json()  # fmt: skip
        return bool(answer["data"]["result"])

    def read() -> ReplicaHistograms:
        ttft, tpot = parse(httpx.get(f"{replica}/metrics", timeout=30, trust_env=False).text)
        return ReplicaHistograms(revision, ttft, tpot)

    with (
        prometheus(platform.workdir, gateway, [f"127.0.0.1:{port}"], {"namespace": "e2e"}) as url,
        httpx.Client(timeout=60, trust_env=False) as client,
    ):
        # one answer first: the series exist from then on, so the window holds all that follow
        assert client.post(f"{platform.url}/v1/chat/completions", json=chat).status_code == 200
        wait_for(lambda: seen(1), "Prometheus to scrape the first answer")
        window = GenAIWindow()
        window.fold({"replica": read()})  # kaip up's baseline: what the replica had
        for _ in range(20):
            answer = client.post(f"{platform.url}/v1/chat/completions", json=chat)
            assert answer.status_code == 200, answer.text
        wait_for(lambda: seen(21), "Prometheus to scrape the 20 answers")
        window.fold({"replica": read()})
        cluster = PrometheusMetrics(url).revision_metrics(
            "e2e", "tiny-lm", revision, 120, genai=True
        )
    local_ttft, local_tpot = window.p95_ms(revision)
    assert window.ttft[revision][float("inf")] == 20
    assert local_ttft is not None and 150 < local_ttft <= 500  # a 0.15 s pause, +Inf never
    assert cluster.ttft_p95_ms == pytest.approx(local_ttft, rel=0.01)
    assert local_tpot is not None
    assert cluster.tpot_p95_ms == pytest.approx(local_tpot, rel=0.01)

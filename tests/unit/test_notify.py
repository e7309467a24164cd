"""Rollout notifications, the pure half: what each target says for each move (issue 13 #7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from kaip.kube.operator.canary import Decision, progress
from kaip.kube.operator.metrics import RevisionMetrics
from kaip.kube.operator.notices import announce, rollout_event
from kaip.notify import RolloutEvent, cloud_event, encode, slack_message
from kaip.plan import revision_id
from kaip.spec import Model, load_text
from kaip.spec.rollout import Notification

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
SPEC = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {{name: digits}}
spec:
  owner: ml
  artifact: {{uri: https://example.com/m.onnx, format: onnx, sha256: {sha}}}
  rollout:
    steps:
      - {{weight: 10, pauseSeconds: 1}}
      - {{weight: 50, pauseSeconds: 1}}
      - {{weight: 100, pauseSeconds: 1}}
    gates: {{maxErrorRate: 0.05, minRequests: 5}}
    notifications:
      - {{url: "http://hooks.test/slack"}}
      - {{url: "http://broker.test/events", format: cloudevents}}
"""


def model(sha: str) -> Model:
    resource = load_text(SPEC.format(sha=sha * 64)).documents[0].resource
    assert isinstance(resource, Model)
    return resource


def test_slack_messages_say_what_moved_and_why() -> None:
    started = RolloutEvent("started", "Model", "digits", "aaa", "bbb", "ann deployed bbb",
                           step=1, steps=3, weight=10, at=AT)  # fmt: skip
    assert slack_message(started) == {
        "text": "Model *digits*: rollout aaa -> bbb started at 10% (step 1/3): ann deployed bbb"
    }
    rolled = RolloutEvent("rolled_back", "App", "ui", "aaa", "bbb", "error rate 50%",
                          namespace="ml", target="kubernetes")  # fmt: skip
    assert slack_message(rolled)["text"] == (
        "App *ml/ui*: rollout aaa -> bbb rolled back: error rate 50%"
    )
    headers, body = encode(Notification(url="http://hooks.test/x"), rolled)
    assert headers == {"content-type": "application/json"} and json.loads(body) == slack_message(
        rolled
    )


def test_a_cloudevent_is_structured_json_with_the_move_as_its_type_and_data() -> None:
    step = RolloutEvent(
        "step", "Model", "digits", "aaa", "bbb", "step 1 passed", namespace="ml",
        target="kubernetes", step=2, steps=3, weight=50, at=AT,
    )  # fmt: skip
    headers, body = cloud_event(step)
    event = json.loads(body)
    assert headers["content-type"] == "application/cloudevents+json"
    assert (event["specversion"], event["type"], event["subject"]) == (
        "1.0", "dev.kaip.rollout.step", "bbb",
    )  # fmt: skip
    assert event["source"] == "/apis/kaip.dev/v1alpha1/namespaces/ml/models/digits"
    assert event["time"].startswith("2026-11-30T02:00:00")
    assert event["data"] == {
        "event": "step", "kind": "Model", "name": "digits", "namespace": "ml",
        "target": "kubernetes", "fromRevision": "aaa", "toRevision": "bbb",
        "reason": "step 1 passed", "step": 2, "steps": 3, "weight": 50,
    }  # fmt: skip
    assert json.loads(cloud_event(step)[1])["id"] != event["id"]  # each event its own id


def test_the_operator_tells_start_each_step_and_the_end_like_kaip_up() -> None:
    old, new = model("a"), model("b")
    healthy = RevisionMetrics(100, 0, 10.0)
    state = progress(None, old, AT, lambda r, w: healthy).state
    sent: list[tuple[str, str | None, int | None, str, str]] = []

    def send(notifications, event):  # type: ignore[no-untyped-def]
        assert [n.format for n in notifications] == ["slack", "cloudevents"]
        sent.append((event.event, event.step, event.weight, event.from_revision, event.target))

    now = AT
    for _ in range(8):
        previous = {"rollout": state.to_status()}
        moved = progress(state, new, now, lambda r, w: healthy)
        announce(send, new, [moved.decision] if moved.decision else [], "ml", previous)
        state, now = moved.state, now + timedelta(seconds=2)
    stable = revision_id(old)
    assert sent == [
        ("started", 1, 10, stable, "kubernetes"), ("step", 2, 50, stable, "kubernetes"),
        ("step", 3, 100, stable, "kubernetes"), ("promoted", None, None, stable, "kubernetes"),
    ]  # fmt: skip
    hold = Decision("hold", "pausing", revision_id(new), {"step": 1})
    assert rollout_event(hold, new, "ml", stable) is None  # holds are not told

"""The gateway's header routing (issue 13 #5): matched requests go to the canary, others by
weight."""

from __future__ import annotations

import pytest

from kaip.errors import SpecError
from kaip.local.gateway.routes import Backend, Route, compile_route
from kaip.spec import load_text
from kaip.spec.rollout import Traffic

pytestmark = pytest.mark.unit


def b(replica: str, revision: str) -> Backend:
    return Backend(replica=replica, revision=revision, host="127.0.0.1", port=1)


def test_a_request_with_a_canary_header_goes_to_the_canary_even_at_weight_zero() -> None:
    route = compile_route(
        Route("model", "m", {"s": 100, "c": 0}, (b("s1", "s"), b("c1", "c")),
              canary="c", canary_headers={b"x-canary": b"yes", b"x-team": b"ml"})
    )  # fmt: skip
    assert route.matched_revision([(b"X-Canary", b"yes")]) == "c"  # names ignore case
    assert route.matched_revision([(b"accept", b"*/*"), (b"x-team", b" ml ")]) == "c"
    assert route.matched_revision([(b"x-canary", b"no")]) is None  # values are exact
    assert route.matched_revision([(b"x-canary-not", b"yes")]) is None
    assert route.matched_revision([]) is None
    assert [rev for _, rev in route.cumulative] == ["s"]  # weight 0: nothing else reaches it


def test_no_match_while_the_canary_cannot_serve_or_without_headers() -> None:
    starting = compile_route(
        Route("model", "m", {"s": 90, "c": 10}, (b("s1", "s"),), canary="c",
              canary_headers={b"x-canary": b"yes"})
    )  # fmt: skip
    assert starting.matched_revision([(b"x-canary", b"yes")]) is None  # weighted as usual
    plain = compile_route(Route("model", "m", {"s": 100}, (b("s1", "s"),)))
    assert plain.matched_revision([(b"x-canary", b"yes")]) is None


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"X Canary": "yes"}, "is not an HTTP header name"),
        ({"X-Canary": " yes"}, "cannot match"),
        ({"X-Canary": "a", "x-canary": "b"}, "named twice"),
    ],
)
def test_bad_header_matches_are_refused_with_the_reason(
    headers: dict[str, str], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        Traffic(canary_headers=headers)


def test_a_mirrored_route_copies_what_goes_to_other_revisions_to_a_ready_canary() -> None:
    backends = (b("s1", "s"), b("c1", "c"), b("c2", "c"))
    route = compile_route(
        Route("model", "m", {"s": 90, "c": 10}, backends, canary="c", mirror=True)
    )
    assert route.mirror_to("s") == backends[1:]
    assert route.mirror_to("c") == ()  # the canary's own requests are not copied to it
    starting = compile_route(Route("model", "m", {"s": 100, "c": 0}, backends[:1], canary="c",
                                   mirror=True))  # fmt: skip
    assert starting.mirror_to("s") == ()
    plain = compile_route(Route("model", "m", {"s": 90, "c": 10}, backends, canary="c"))
    assert plain.mirror_to("s") == ()


def test_mirroring_needs_a_canary_strategy_and_says_where() -> None:
    text = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: m}
spec:
  owner: t
  artifact: {uri: model.joblib, format: sklearn}
  rollout: {strategy: replace, traffic: {mirror: true}}
"""
    with pytest.raises(SpecError, match=r"traffic\.mirror.*strategy: canary") as refused:
        load_text(text)
    assert "spec.rollout.traffic.mirror" in str(refused.value)


def test_a_request_with_a_canary_cookie_goes_to_the_canary() -> None:
    route = compile_route(
        Route("app", "a", {"s": 100, "c": 0}, (b("s1", "s"), b("c1", "c")), canary="c",
              canary_cookies={b"canary": b"always"})
    )  # fmt: skip
    assert route.matched_revision([(b"Cookie", b"canary=always")]) == "c"
    assert route.matched_revision([(b"cookie", b"session=x; canary=always; theme=dark")]) == "c"
    assert route.matched_revision([(b"cookie", b"session=x"), (b"cookie", b"canary=always")]) == "c"
    assert route.matched_revision([(b"cookie", b"canary=never")]) is None  # values are exact
    assert route.matched_revision([(b"cookie", b"Canary=always")]) is None  # names too
    assert route.matched_revision([(b"cookie", b"xcanary=always")]) is None
    assert route.matched_revision([(b"x-canary", b"always")]) is None  # a header is no cookie


@pytest.mark.parametrize(
    ("cookies", "words"),
    [
        ({"can ary": "always"}, "is not a cookie name"),
        ({"canary": "a;b"}, "cannot match"),
        ({"canary": ""}, "cannot match"),
        ({"canary": "a b"}, "cannot match"),
    ],
)
def test_bad_cookie_matches_are_refused_with_the_reason(
    cookies: dict[str, str], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        Traffic(canary_cookies=cookies)


def test_blue_green_needs_a_preview_route_and_one_step_at_weight_0_said_where() -> None:
    head = """\
apiVersion: kaip.dev/v1alpha1
kind: Model
metadata: {name: m}
spec:
  owner: t
  artifact: {uri: model.onnx, format: onnx}
  rollout:
    strategy: blueGreen
"""
    preview = "    traffic: {canaryCookies: {preview: green}}\n"
    (doc,) = load_text(head + preview).documents
    rollout = doc.resource.spec.rollout
    assert [(s.weight, s.pause is not None) for s in rollout.steps] == [(0, True)]  # by hand
    timed = load_text(head + preview + "    steps: [{weight: 0, pauseSeconds: 60}]\n")
    assert timed.documents[0].resource.spec.rollout.steps[0].pause_seconds == 60
    with pytest.raises(SpecError, match="blueGreen needs a preview route") as no_route:
        load_text(head)
    assert "spec.rollout.strategy" in str(no_route.value)
    with pytest.raises(
        SpecError, match=r"one step, the preview at weight 0 \(got weights \[0, 100\]"
    ) as steps:
        load_text(head + preview + "    steps: [{weight: 0}, {weight: 100}]\n")
    assert "spec.rollout.steps" in str(steps.value)

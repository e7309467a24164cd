from __future__ import annotations

import random
from collections import Counter

import pytest

from kaip.local.gateway.balance import pick_backend, pick_least_outstanding, pick_revision
from kaip.local.gateway.routes import Backend, Route, RouteTable, compile_route


def b(replica: str, revision: str = "r1") -> Backend:
    return Backend(replica=replica, revision=revision, host="127.0.0.1", port=1)


def test_weighted_choice_follows_the_weights() -> None:
    route = compile_route(Route("model", "m", {"s": 90, "c": 10}, (b("s1", "s"), b("c1", "c"))))
    rng = random.Random(42)
    counts = Counter(pick_revision(route, rng) for _ in range(20_000))
    # 10% of 20,000 = 2,000; binomial sd ~42: +-250 is ~6 sd (and the rng is seeded).
    assert abs(counts["c"] - 2000) < 250
    assert set(counts) == {"s", "c"}


def test_a_revision_without_backends_gets_no_share_and_zero_weight_never_serves() -> None:
    starting = compile_route(Route("model", "m", {"s": 50, "c": 50}, (b("s1", "s"),)))
    assert {pick_revision(starting, random.Random(i)) for i in range(50)} == {"s"}
    drained = compile_route(Route("model", "m", {"s": 100, "c": 0}, (b("s1", "s"), b("c1", "c"))))
    assert {pick_revision(drained, random.Random(i)) for i in range(50)} == {"s"}


def test_backends_of_unweighted_revisions_still_serve_when_nothing_else_can() -> None:
    route = compile_route(Route("model", "m", {"new": 100}, (b("o1", "old"),)))
    assert pick_revision(route, random.Random(0)) == "old"
    empty = compile_route(Route("model", "m", {"r": 100}, ()))
    assert pick_revision(empty, random.Random(0)) is None
    assert not empty.has_backends


def test_least_outstanding_picks_the_idlest_and_breaks_ties_at_random() -> None:
    backends = [b("x"), b("y"), b("z")]
    rng = random.Random(1)
    assert pick_least_outstanding(backends, {"x": 3, "y": 1, "z": 2}, rng) == b("y")
    tied = Counter(pick_least_outstanding(backends, {"x": 1}, rng).replica for _ in range(400))  # type: ignore[union-attr]
    assert set(tied) == {"y", "z"}
    assert pick_least_outstanding(backends, {}, rng, exclude={"x", "y"}) == b("z")
    assert pick_least_outstanding(backends, {}, rng, exclude={"x", "y", "z"}) is None


def test_retries_prefer_the_same_revision_then_any() -> None:
    route = compile_route(
        Route("model", "m", {"s": 50, "c": 50}, (b("s1", "s"), b("s2", "s"), b("c1", "c")))
    )
    rng = random.Random(3)
    assert pick_backend(route, "s", {}, rng, exclude={"s1"}) == b("s2", "s")
    assert pick_backend(route, "s", {}, rng, exclude={"s1", "s2"}) == b("c1", "c")
    assert pick_backend(route, "s", {}, rng, exclude={"s1", "s2", "c1"}) is None


def test_route_table_rejects_duplicate_names_per_kind() -> None:
    model = Route("model", "x", {"r": 100}, ())
    app = Route("app", "x", {"r": 100}, ())
    table = RouteTable.build([model, app])
    assert table.lookup("model", "x") is not None and table.lookup("app", "x") is not None
    with pytest.raises(ValueError, match="two model routes"):
        RouteTable.build([model, model])

"""Prefix-affinity scoring (kaip.local.gateway.prefix): pure functions, a seeded random source."""

from __future__ import annotations

import json
import random

from kaip.local.gateway.prefix import (
    BLOCK_CHARS,
    MAX_BLOCKS,
    MAX_EXTRA_IN_FLIGHT,
    PrefixIndex,
    block_hashes,
    pick_by_prefix,
    prompt_of,
)
from kaip.local.gateway.routes import Backend

A, B, C = (Backend(r, "r1", "127.0.0.1", 1000 + i) for i, r in enumerate("ABC"))
LONG = "x" * (BLOCK_CHARS * 3)


def test_a_block_hash_stands_for_the_whole_prefix_before_it() -> None:
    one, two = block_hashes("a" * BLOCK_CHARS + LONG), block_hashes("b" * BLOCK_CHARS + LONG)
    assert len(one) == 4 and one[1:] != two[1:]  # same later blocks, different prefix
    assert block_hashes("a" * (BLOCK_CHARS - 1)) == []  # shorter than a block: nothing
    assert len(block_hashes("z" * BLOCK_CHARS * (MAX_BLOCKS + 10))) == MAX_BLOCKS
    assert block_hashes(LONG + "tail one")[:3] == block_hashes(LONG + "tail two")[:3]


def test_the_prompt_is_read_from_chat_and_completion_requests_only() -> None:
    chat = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]}
    assert (
        prompt_of(b"/v1/chat/completions", json.dumps(chat).encode())
        == "system\x1fS\x1euser\x1fU\x1e"
    )
    assert prompt_of(b"/v1/completions", b'{"prompt": "P"}') == "P"
    assert prompt_of(b"/v2/models/m/infer", b'{"prompt": "P"}') is None
    assert prompt_of(b"/v1/chat/completions", b"not json") is None
    assert prompt_of(b"/v1/completions", b'{"prompt": ["a", "b"]}') is None


def test_the_longest_match_wins_unless_it_is_much_busier() -> None:
    index, hashes = PrefixIndex(), block_hashes(LONG)
    index.record(hashes[:1], "A")
    index.record(hashes, "B")
    rng = random.Random(1)
    assert pick_by_prefix([A, B, C], hashes, index, {}, rng) is B
    busy = {"B": MAX_EXTRA_IN_FLIGHT + 1}
    assert pick_by_prefix([A, B, C], hashes, index, busy, rng) is A  # next best match
    assert pick_by_prefix([A, B, C], hashes, index, {"B": MAX_EXTRA_IN_FLIGHT}, rng) is B
    assert pick_by_prefix([A, B, C], hashes, index, {}, rng, exclude={"B"}) is A
    assert pick_by_prefix([A], hashes, index, {}, rng, exclude={"A"}) is None


def test_no_match_is_least_request_with_random_ties() -> None:
    index, rng = PrefixIndex(), random.Random(7)
    hashes = block_hashes(LONG)
    assert pick_by_prefix([A, B, C], hashes, index, {"A": 2, "B": 1, "C": 1}, rng) in (B, C)
    picks = {pick_by_prefix([A, B], hashes, index, {}, rng).replica for _ in range(50)}  # type: ignore[union-attr]
    assert picks == {"A", "B"}


def test_the_index_is_bounded_and_forgets_the_least_recent() -> None:
    index = PrefixIndex(most=4)
    first, second = block_hashes(LONG), block_hashes("y" * BLOCK_CHARS * 3)
    index.record(first, "A")
    index.record(second, "B")
    assert len(index) == 4
    assert index.matched(second, "B") == 3 and index.matched(first, "A") == 0  # the oldest went
    index.record(second, "C")
    assert index.matched(second, "C") == 3 and index.matched(second, "B") == 3


def test_a_new_prefix_goes_to_the_replica_holding_the_fewest() -> None:
    index, rng = PrefixIndex(), random.Random(3)
    first, second = block_hashes(LONG), block_hashes("y" * BLOCK_CHARS * 3)
    index.record(first, "A")
    # Both idle: the second prompt goes to B, so each replica's cache keeps one of the two.
    assert all(pick_by_prefix([A, B], second, index, {}, rng) is B for _ in range(20))
    assert (index.owned("A"), index.owned("B")) == (1, 0)
    index.record(second, "B")
    index.record(first, "B")  # the first prompt moved: it is B's now
    assert (index.owned("A"), index.owned("B")) == (0, 2)

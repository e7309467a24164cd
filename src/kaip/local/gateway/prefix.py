"""Prefix-affinity routing for LLMs: requests that share a long prompt prefix go to the replica
that most likely still holds it in its KV cache, unless that replica is much busier.

As llm-d's prefix-cache scorer does, the prompt (an OpenAI request's ``messages`` or
``prompt``) is cut into blocks of :data:`BLOCK_CHARS` characters and each block is hashed
together with the hash of the blocks before it, so a block hash stands for the whole prefix up
to its end. :class:`PrefixIndex` remembers, for the latest :data:`MAX_BLOCKS_KEPT` block
hashes, which replicas were sent a prompt with that prefix (most recent first, at most
:data:`REPLICAS_PER_BLOCK`). :func:`pick_by_prefix` scores each candidate by the number of
leading blocks it was sent and takes the best match, balanced against queue depth: a candidate
with more than :data:`MAX_EXTRA_IN_FLIGHT` requests in flight above the least-loaded one is
not chosen for its cache. No match (a new prefix) is least-request, then the replica the fewest
kept prefixes were last sent to, then random.

Pure, apart from the index's own memory; no I/O. Prompts are read from a body the gateway has
already buffered and bounded; at most :data:`MAX_BLOCKS` blocks of a prompt are hashed.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Container, Mapping, Sequence
from typing import Any

import orjson

from kaip.local.gateway.routes import Backend

BLOCK_CHARS = 256
MAX_BLOCKS = 64
MAX_BLOCKS_KEPT = 100_000
REPLICAS_PER_BLOCK = 4
MAX_EXTRA_IN_FLIGHT = 4
PROMPT_PATHS = (b"/v1/chat/completions", b"/v1/completions")


def prompt_of(path: bytes, body: bytes) -> str | None:
    """The prompt text of an OpenAI chat or completion request (None: not one, or unreadable)."""
    if not path.startswith(PROMPT_PATHS) or not body:
        return None
    try:
        request: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(request, dict):
        return None
    messages = request.get("messages")
    if isinstance(messages, list):
        parts = []
        for message in messages:
            if isinstance(message, dict):
                content = message.get("content")
                text = content if isinstance(content, str) else orjson.dumps(content).decode()
                parts.append(f"{message.get('role', '')}\x1f{text}\x1e")
        return "".join(parts)
    prompt = request.get("prompt")
    if isinstance(prompt, str):
        return prompt
    return None


def block_hashes(text: str) -> list[int]:
    """One chained hash per whole :data:`BLOCK_CHARS` block of ``text`` (at most
    :data:`MAX_BLOCKS`); a prompt shorter than one block has none."""
    hashes: list[int] = []
    previous = 0
    for start in range(0, min(len(text), BLOCK_CHARS * MAX_BLOCKS) - BLOCK_CHARS + 1, BLOCK_CHARS):
        previous = hash((previous, text[start : start + BLOCK_CHARS]))
        hashes.append(previous)
    return hashes


class PrefixIndex:
    """Which replicas were sent which prompt prefixes lately (bounded, least recent dropped),
    and how many distinct prefixes (first blocks) each replica was the last to be sent."""

    def __init__(self, most: int = MAX_BLOCKS_KEPT) -> None:
        self._most = most
        self._blocks: OrderedDict[int, tuple[str, ...]] = OrderedDict()
        self._roots: OrderedDict[int, str] = OrderedDict()
        self._owned: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._blocks)

    def owned(self, replica: str) -> int:
        """How many of the prefixes kept were last sent to ``replica``: a new prefix goes where
        fewest are, so that the working set spreads over the replicas' caches."""
        return self._owned.get(replica, 0)

    def _own(self, root: int, replica: str) -> None:
        before = self._roots.pop(root, None)
        if before is not None:
            self._owned[before] -= 1
        self._roots[root] = replica
        self._owned[replica] = self._owned.get(replica, 0) + 1
        while len(self._roots) > self._most:
            _, gone = self._roots.popitem(last=False)
            self._owned[gone] -= 1

    def matched(self, hashes: Sequence[int], replica: str) -> int:
        """How many leading blocks of ``hashes`` ``replica`` was sent."""
        count = 0
        for block in hashes:
            if replica not in self._blocks.get(block, ()):
                break
            count += 1
        return count

    def record(self, hashes: Sequence[int], replica: str) -> None:
        """``replica`` was sent a prompt with these blocks: it now likely holds them."""
        blocks = self._blocks
        if hashes:
            self._own(hashes[0], replica)
        for block in hashes:
            held = blocks.pop(block, ())
            blocks[block] = (replica, *(r for r in held if r != replica))[:REPLICAS_PER_BLOCK]
        while len(blocks) > self._most:
            blocks.popitem(last=False)


def pick_by_prefix(
    backends: Sequence[Backend],
    hashes: Sequence[int],
    index: PrefixIndex,
    outstanding: Mapping[str, int],
    rng: random.Random,
    exclude: Container[str] = (),
) -> Backend | None:
    """The candidate holding the longest prefix of ``hashes`` among those at most
    :data:`MAX_EXTRA_IN_FLIGHT` requests busier than the least-loaded; ties (and no match at
    all) go to the least loaded, then to the one fewest kept prefixes were last sent to (so two
    prompts do not share one replica's cache while another holds none), then at random. None
    when every backend is excluded."""
    candidates = [b for b in backends if b.replica not in exclude]
    if not candidates:
        return None
    least = min(outstanding.get(b.replica, 0) for b in candidates)
    eligible = [
        b for b in candidates if outstanding.get(b.replica, 0) <= least + MAX_EXTRA_IN_FLIGHT
    ]
    scored = [
        (
            -index.matched(hashes, b.replica),
            outstanding.get(b.replica, 0),
            index.owned(b.replica),
            rng.random(),
            i,
        )
        for i, b in enumerate(eligible)
    ]
    return eligible[min(scored)[4]]

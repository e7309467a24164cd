"""Prefix-affinity routing through the real gateway to two real replicas (issue 17 item 3).

With ``prefix_affinity`` (``serve.routing: prefix-affinity``) every OpenAI chat request that
shares a long system prompt goes to the one replica that was sent it first, whatever the user
asks after it; another prompt may go to the other replica. Without it, the same requests spread
over both (least-request, ties broken at random). Which replica answered is the backend's
``x-replica`` header.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from gateway_harness import AB, backend, model, run, running

SYSTEMS = [
    f"You are assistant number {i}. " + "Follow the house style guide. " * 40 for i in range(4)
]


def chat(system: str, question: str) -> dict[str, object]:
    return {
        "model": "m",
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question},
        ],
    }


def answered(backends_ab: AB, affinity: bool) -> dict[int, set[str]]:
    """Which replicas answered each system prompt, over 6 questions each, asked in turn."""
    a, b = backends_ab
    route = replace(
        model("m", {"r1": 100}, backend("A", "r1", a.port), backend("B", "r1", b.port)),
        prefix_affinity=affinity,
    )
    seen: dict[int, set[str]] = defaultdict(set)

    async def scenario() -> None:
        async with running([route]) as (_gateway, client):
            for question in range(6):
                for i, system in enumerate(SYSTEMS):
                    answer = await client.post(
                        "/v1/chat/completions", json=chat(system, f"question {question}?")
                    )
                    assert answer.status_code == 200, answer.text
                    seen[i].add(answer.headers["x-replica"])

    run(scenario())
    return seen


def test_a_shared_prompt_prefix_sticks_to_one_replica(backends_ab: AB) -> None:
    seen = answered(backends_ab, affinity=True)
    assert all(len(replicas) == 1 for replicas in seen.values()), seen


def test_without_affinity_the_same_requests_spread_over_both(backends_ab: AB) -> None:
    seen = answered(backends_ab, affinity=False)
    assert set().union(*seen.values()) == {"A", "B"}, seen  # 24 coin flips all alike: 1e-7
    assert any(len(replicas) == 2 for replicas in seen.values()), seen

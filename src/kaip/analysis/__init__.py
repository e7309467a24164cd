"""The analysis checks' I/O: ask Prometheus, call the webhooks, hand the answers to the policy.

Owns the outbound half of ``spec.rollout.analysis`` for both targets: :func:`run_checks` sends
every query of a step to the Prometheus HTTP API (``GET /api/v1/query``) and POSTs the step to
every webhook, all at once, each bounded in time (the webhook's ``timeoutSeconds``, at most
:data:`QUERY_TIMEOUT_SECONDS` for a query) and in the size of the answer it reads, following no
redirect. :func:`run_hooks` calls the ``pre-rollout`` webhooks (before any traffic) or the
``post-rollout`` ones (after the end, told the outcome) the same way. What came back is judged by
:mod:`kaip.policy.checks`; this module never decides
anything and never raises for an answer: an unreachable Prometheus is a pending result, an
unreachable webhook a failed one. ``kaip up`` awaits it on its event loop; the operator, which is
synchronous, runs it with :func:`asyncio.run`.

The body a webhook gets (JSON)::

    {"kind": "Model", "name": "digits", "namespace": "default", "target": "kubernetes",
     "phase": "rollout", "revision": "3f2a...", "stableRevision": "b418...",
     "step": 1, "steps": 3, "weight": 10, "check": "load-test", "metadata": {...}}

``phase`` is the webhook's ``type`` (``pre-rollout``: ``step`` 0, ``weight`` 0); a
``post-rollout`` one also gets ``"outcome": "promoted" | "rolled_back" | "aborted"`` and the
verdict's ``"reason"``.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from kaip.policy import CheckResult, judge_query, judge_webhook, render_query
from kaip.spec.rollout import Analysis, HookType, QueryCheck, WebhookCheck

QUERY_TIMEOUT_SECONDS: Final = 10.0
MAX_QUERY_ANSWER_BYTES: Final = 1 << 20
MAX_WEBHOOK_ANSWER_BYTES: Final = 4096
USER_AGENT: Final = "kaip-analysis"


@dataclass(frozen=True)
class StepContext:
    """Which rollout step the checks are asked about."""

    kind: str
    name: str
    namespace: str
    revision: str
    stable_revision: str
    step: int
    """1-based."""
    steps: int
    weight: int
    target: str = "local"
    outcome: str = ""
    """How the rollout ended (``promoted``, ``rolled_back``, ``aborted``): post-rollout only."""
    reason: str = ""

    def variables(self) -> dict[str, str]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "revision": self.revision,
            "stableRevision": self.stable_revision,
        }

    def webhook_body(self, check: WebhookCheck) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "target": self.target,
            "phase": check.type or "rollout",
            "revision": self.revision,
            "stableRevision": self.stable_revision,
            "step": self.step,
            "steps": self.steps,
            "weight": self.weight,
            "check": check.name,
            "metadata": dict(check.metadata),
        } | ({"outcome": self.outcome, "reason": self.reason} if self.outcome else {})


async def run_checks(
    analysis: Analysis,
    context: StepContext,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[CheckResult, ...]:
    """Every check of ``analysis`` asked once about ``context``, in declaration order."""
    async with httpx.AsyncClient(
        transport=transport, trust_env=False, follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    ) as client:  # fmt: skip
        asked = [_query(client, analysis.prometheus or "", q, context) for q in analysis.queries]
        asked += [_webhook(client, w, context) for w in analysis.hooks("rollout")]
        return tuple(await asyncio.gather(*asked))


async def run_hooks(
    analysis: Analysis,
    phase: HookType,
    context: StepContext,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[CheckResult, ...]:
    """Every webhook of ``analysis`` of type ``phase`` called once, all at once, in order."""
    hooks = analysis.hooks(phase)
    if not hooks:
        return ()
    async with httpx.AsyncClient(
        transport=transport, trust_env=False, follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    ) as client:  # fmt: skip
        return tuple(await asyncio.gather(*(_webhook(client, w, context) for w in hooks)))


async def _read(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, and whether there was more."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return bytes(body[:limit]), True
    return bytes(body), False


async def _query(
    client: httpx.AsyncClient, prometheus: str, check: QueryCheck, context: StepContext
) -> CheckResult:
    promql = render_query(check, context.variables())
    url = prometheus.rstrip("/") + "/api/v1/query"
    try:
        async with asyncio.timeout(QUERY_TIMEOUT_SECONDS):
            async with client.stream("GET", url, params={"query": promql}) as response:
                body, cut = await _read(response, MAX_QUERY_ANSWER_BYTES)
    except (httpx.HTTPError, TimeoutError) as exc:
        what = str(exc) or f"no answer in {QUERY_TIMEOUT_SECONDS:g}s"
        return judge_query(check, None, f"cannot ask Prometheus at {prometheus}: {what}")
    if cut:
        return judge_query(check, None, f"Prometheus answered more than {MAX_QUERY_ANSWER_BYTES}B")
    value, error = _instant_value(response.status_code, body)
    return judge_query(check, value, error)


def _instant_value(status_code: int, body: bytes) -> tuple[float | None, str]:
    """The one number an instant query answered, or None and why not."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, Mapping):
        return None, f"Prometheus answered HTTP {status_code} without JSON"
    if status_code != 200 or answer.get("status") != "success":
        return None, f"Prometheus refused the query (HTTP {status_code}): {answer.get('error')}"
    data = answer.get("data") or {}
    result = data.get("result") if isinstance(data, Mapping) else None
    if data.get("resultType") == "scalar" and isinstance(result, list):
        sample: Any = result
    elif isinstance(result, list) and len(result) == 1 and isinstance(result[0], Mapping):
        sample = result[0].get("value")
    elif isinstance(result, list) and len(result) > 1:
        return None, f"the query answered {len(result)} series: aggregate it to one (sum(...))"
    else:
        return None, "no data yet"
    try:
        value = float(sample[1])
    except (IndexError, TypeError, ValueError):
        return None, "the query's answer holds no number"
    return (None, "the query answered NaN") if math.isnan(value) else (value, "")


async def _webhook(
    client: httpx.AsyncClient, check: WebhookCheck, context: StepContext
) -> CheckResult:
    try:
        async with asyncio.timeout(check.timeout_seconds):
            async with client.stream(
                "POST", check.url, json=context.webhook_body(check),
                timeout=check.timeout_seconds,
            ) as response:  # fmt: skip
                body, _ = await _read(response, MAX_WEBHOOK_ANSWER_BYTES)
    except (TimeoutError, httpx.TimeoutException):
        return judge_webhook(check, None, error=f"no answer in {check.timeout_seconds:g}s")
    except httpx.HTTPError as exc:
        return judge_webhook(check, None, error=f"cannot reach {check.url}: {exc}")
    return judge_webhook(check, response.status_code, body.decode("utf-8", "replace"))


__all__ = ["MAX_WEBHOOK_ANSWER_BYTES", "StepContext", "run_checks", "run_hooks"]

"""Analysis checks beyond the built-in gates: an observation in, a result with evidence out (pure).

Every check a rollout runs besides the built-in request/error/latency gates (a PromQL query
compared with its bounds, a webhook's vote; issue 14's cost gate fits the same shape) is judged
here the same way on both targets: the target does the I/O (:mod:`kaip.analysis` asks
Prometheus, calls the webhook), hands the raw observation to a ``judge_*`` function and gets a
:class:`CheckResult` back. :func:`kaip.policy.rollout` then treats every result alike: a
``fail`` rolls the new revision back with the result's evidence as the reason, a ``pending``
holds the step (as missing evidence does, so the progress deadline applies), ``pass`` lets the
step go.

Worked examples::

    query error-ratio (max 0.05), Prometheus answers 0.012   -> pass: 0.012 within max 0.05
    query error-ratio (max 0.05), Prometheus answers 0.31    -> fail: 0.31 > max 0.05
    query error-ratio, empty result                          -> pending: no data yet
    query error-ratio, Prometheus unreachable                -> pending: the error (no verdict
                                                                 on a revision from an outage)
    webhook load-test answers 204                            -> pass: HTTP 204
    webhook load-test answers 500 "p99 too high"             -> fail: HTTP 500: p99 too high
    webhook load-test does not answer in 10 s                -> fail: no answer in 10s

Nothing here reads a clock, the network or the environment.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kaip.spec.rollout import Analysis, QueryCheck, WebhookCheck

CheckStatus = Literal["pass", "fail", "pending"]
MAX_EVIDENCE_CHARS = 300
"""What an answer may add to the evidence: a rollout record is not a log."""


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict on one observation, and the evidence a person reads."""

    check: str
    """What was checked, e.g. ``query error-ratio`` or ``webhook load-test``."""
    status: CheckStatus
    evidence: str
    value: float | None = None

    def describe(self) -> str:
        return f"{self.check}: {self.evidence}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": self.check,
            "status": self.status,
            "evidence": self.evidence,
        }
        if self.value is not None:
            out["value"] = self.value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult | None:
        """A result :meth:`to_dict` wrote (e.g. into ``status.rollout``), or None if unusable."""
        status, value = data.get("status"), data.get("value")
        if status not in ("pass", "fail", "pending"):
            return None
        number = float(value) if isinstance(value, int | float) else None
        return cls(str(data.get("check", ""))[:200], status, str(data.get("evidence", "")), number)


def render_query(check: QueryCheck, variables: Mapping[str, str]) -> str:
    """The check's PromQL with its ``{{variable}}`` placeholders filled in.

    >>> q = QueryCheck(name="e", query='rate(x{revision="{{revision}}"}[1m])', max=1)
    >>> render_query(q, {"revision": "abc"})
    'rate(x{revision="abc"}[1m])'
    """
    text = check.query
    for key, value in variables.items():
        text = text.replace("{{" + key + "}}", value).replace("{{ " + key + " }}", value)
    return text


def judge_query(check: QueryCheck, value: float | None, error: str = "") -> CheckResult:
    """The verdict on a query's result: ``value`` None means no data (or ``error``).

    >>> q = QueryCheck(name="error-ratio", query="q", max=0.05)
    >>> judge_query(q, 0.31).describe()
    'query error-ratio: 0.31 > max 0.05'
    >>> judge_query(q, None).status
    'pending'
    """
    name = f"query {check.name}"
    if value is None or math.isnan(value):
        return CheckResult(name, "pending", _short(error) or "no data yet")
    if check.max is not None and value > check.max:
        return CheckResult(name, "fail", f"{value:g} > max {check.max:g}", value)
    if check.min is not None and value < check.min:
        return CheckResult(name, "fail", f"{value:g} < min {check.min:g}", value)
    bounds = [f"{k} {b:g}" for k, b in (("min", check.min), ("max", check.max)) if b is not None]
    return CheckResult(name, "pass", f"{value:g} within {' and '.join(bounds)}", value)


def judge_webhook(
    check: WebhookCheck, status_code: int | None, body: str = "", error: str = ""
) -> CheckResult:
    """A webhook's vote: 2xx passes; any other answer, or none (``error``), fails.

    >>> w = WebhookCheck(name="load-test", url="http://loadtester.test/run")
    >>> judge_webhook(w, 500, "p99 too high").describe()
    'webhook load-test: HTTP 500: p99 too high'
    >>> judge_webhook(w, None, error="no answer in 10s").status
    'fail'
    """
    name = f"webhook {check.name}"
    if status_code is None:
        return CheckResult(name, "fail", _short(error) or "no answer")
    text = _short(body)
    evidence = f"HTTP {status_code}" + (f": {text}" if text else "")
    return CheckResult(name, "pass" if 200 <= status_code < 300 else "fail", evidence)


def not_asked(analysis: Analysis | None) -> tuple[CheckResult, ...]:
    """Every check of ``analysis`` as pending, before its first answer in a step."""
    if analysis is None:
        return ()
    names = [f"query {q.name}" for q in analysis.queries]
    names += [f"webhook {w.name}" for w in analysis.hooks("rollout")]
    return tuple(CheckResult(n, "pending", "not asked yet") for n in names)


def first(results: Iterable[CheckResult], status: CheckStatus) -> CheckResult | None:
    """The first result with ``status``, in the order the checks are declared."""
    return next((r for r in results if r.status == status), None)


def _short(text: str) -> str:
    return " ".join(text.split())[:MAX_EVIDENCE_CHARS]

"""How a new revision replaces the stable one: ``spec.rollout`` of a Model or an App.

Owns the rollout part of the spec: the strategy (``canary`` steps, ``replace`` at once, or
``blueGreen``: the new revision at full size behind a preview route, then all at once), the steps
(weights, timed and manual pauses), the built-in gates, the progress deadline, analysis beyond
the built-in gates (PromQL queries against a Prometheus, webhooks that vote, pre- and
post-rollout hooks) and who is told of the rollout's moves. Every field
added after the first release defaults to absent, so specs that do not use it keep their
revision ids. Pure: no I/O; the decisions these fields feed live in :mod:`kaip.policy`, the
checks' I/O in :mod:`kaip.analysis`, the notifications' in :mod:`kaip.notify`.

::

    rollout:
      steps: [{weight: 10, pauseSeconds: 60}, {weight: 50, pause: {}}, {weight: 100}]
      gates: {maxErrorRate: 0.01, minRequests: 20}
      # generative models: p95 from the replicas' GenAI histograms, absolute or against stable
      # gates: {maxP95TimeToFirstTokenMs: 500, maxTimePerOutputTokenRatio: 1.5, ...}
      progressDeadlineSeconds: 600    # then onNoEvidence decides: abort (default) | promote
      traffic: {canaryHeaders: {X-Canary: "yes"}, canaryCookies: {canary: always}, mirror: true}
      analysis:
        intervalSeconds: 10           # each check is asked again this often during a step
        prometheus: http://prometheus.monitoring:9090
        queries:
          - name: error-ratio
            query: sum(rate(errors{revision="{{revision}}"}[1m])) / sum(rate(...[1m]))
            max: 0.05
        webhooks:
          - {name: load-test, url: http://loadtester.test/run, timeoutSeconds: 10}
          - {name: smoke, type: pre-rollout, url: http://tester.test/smoke}  # before any traffic
          - {name: report, type: post-rollout, url: http://tester.test/done}  # told the outcome
      notifications:                  # started, step, promoted, rolled_back, aborted
        - {url: https://hooks.slack.com/services/T0/B0/XXX, format: slack}
        - {url: http://broker.test/events, format: cloudevents}
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from kaip.spec.base import FieldProblem, SpecModel, ValueProblem

MAX_ROLLOUT_STEPS = 20
MAX_DEADLINE_SECONDS = 7 * 24 * 3600.0
MAX_QUERIES = 16
MAX_WEBHOOKS = 16
MAX_QUERY_CHARS = 4096
MAX_METADATA = 32
MAX_WEBHOOK_TIMEOUT_SECONDS = 60.0
MAX_NOTIFICATIONS = 8
MAX_HEADER_MATCHES = 8
QUERY_VARIABLES = ("name", "namespace", "revision", "stableRevision")
"""What ``{{...}}`` in a query may name; anything else is refused at validation."""

HTTP_URL_PATTERN = r"^https?://[^\s/?#@]+([/?#]\S*)?$"
_HTTP_URL = re.compile(HTTP_URL_PATTERN)
CHECK_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_CHECK_NAME = re.compile(CHECK_NAME_PATTERN)
_VARIABLE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
HEADER_NAME_PATTERN = r"^[!#$%&*+.^_`|~0-9A-Za-z-]{1,128}$"
"""An HTTP field name (an RFC 9110 token but for ``'``, which the CRD's CEL rule cannot hold)."""
_HEADER_NAME = re.compile(HEADER_NAME_PATTERN)
MATCH_VALUE_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]{0,254}[\x21-\x7e])?$"
"""A header value matched exactly: printable ASCII, no leading or trailing space, at most 256."""
_MATCH_VALUE = re.compile(MATCH_VALUE_PATTERN)


def _check_url(value: str) -> str:
    if not _HTTP_URL.fullmatch(value):
        raise ValueProblem(
            f"{value[:80]!r} is not an http:// or https:// URL",
            "write the full address without credentials, e.g. http://prometheus.test:9090",
        )
    return value


HttpUrl = Annotated[
    str,
    AfterValidator(_check_url),
    Field(min_length=8, max_length=2048, json_schema_extra={"pattern": HTTP_URL_PATTERN}),
]


def _check_check_name(value: str) -> str:
    if not _CHECK_NAME.fullmatch(value):
        raise ValueProblem(
            f"{value[:80]!r} is not a check name",
            "use 1 to 63 lower-case letters, digits and '-', e.g. error-ratio",
        )
    return value


CheckName = Annotated[
    str,
    AfterValidator(_check_check_name),
    Field(max_length=63, json_schema_extra={"pattern": CHECK_NAME_PATTERN}),
]


def _check_header_matches(matches: dict[str, str]) -> dict[str, str]:
    for name, value in matches.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueProblem(
                f"{name[:40]!r} is not an HTTP header name",
                "letters, digits and !#$%&*+.^_`|~- only, at most 128, e.g. X-Canary",
            )
        if not _MATCH_VALUE.fullmatch(value):
            raise ValueProblem(
                f"the header {name!r} has a value kaip cannot match: {value[:40]!r}",
                "printable ASCII, at most 256 characters, no leading or trailing space",
            )
    lowered = [name.lower() for name in matches]
    if len(set(lowered)) != len(lowered):
        raise ValueProblem("a header is named twice (header names ignore case)")
    return matches


COOKIE_VALUE_PATTERN = r"^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]{1,256}$"
"""A cookie value matched exactly (RFC 6265 cookie-octets: no space, quote, comma, semicolon or
backslash), at most 256 characters."""
_COOKIE_VALUE = re.compile(COOKIE_VALUE_PATTERN)


def _check_cookie_matches(matches: dict[str, str]) -> dict[str, str]:
    for name, value in matches.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueProblem(
                f"{name[:40]!r} is not a cookie name",
                "letters, digits and !#$%&*+.^_`|~- only, at most 128, e.g. canary",
            )
        if not _COOKIE_VALUE.fullmatch(value):
            raise ValueProblem(
                f"the cookie {name!r} has a value kaip cannot match: {value[:40]!r}",
                "1 to 256 printable ASCII characters but space, quote, comma, semicolon and "
                "backslash, e.g. always",
            )
    return matches


CookieMatches = Annotated[
    dict[str, str],
    AfterValidator(_check_cookie_matches),
    Field(
        max_length=MAX_HEADER_MATCHES,
        json_schema_extra={
            "propertyNames": {
                "pattern": HEADER_NAME_PATTERN, "maxLength": 128,
                "description": "every key must be a cookie name (e.g. canary)",
            },
            "additionalProperties": {
                "type": "string", "pattern": COOKIE_VALUE_PATTERN, "maxLength": 256,
            },
        },
    ),
]  # fmt: skip


HeaderMatches = Annotated[
    dict[str, str],
    AfterValidator(_check_header_matches),
    Field(
        max_length=MAX_HEADER_MATCHES,
        json_schema_extra={
            "propertyNames": {
                "pattern": HEADER_NAME_PATTERN, "maxLength": 128,
                "description": "every key must be an HTTP header name (e.g. X-Canary)",
            },
            "additionalProperties": {
                "type": "string", "pattern": MATCH_VALUE_PATTERN, "maxLength": 256,
            },
        },
    ),
]  # fmt: skip


class ManualPause(SpecModel):
    """``pause: {}``: hold at this step until ``kaip rollout promote`` releases it."""


class RolloutStep(SpecModel):
    """Send ``weight`` percent of traffic to the new revision, then wait.

    Weight 0 is a preview: only requests matched by ``traffic.canaryHeaders`` reach the new
    revision. A step waits ``pauseSeconds`` and for ``gates.minRequests`` of evidence or, with
    ``pause: {}``, until someone runs ``kaip rollout promote`` (however long that takes; the
    gates still roll back a canary that fails them meanwhile).
    """

    weight: int = Field(
        ge=0,
        le=100,
        description="percent of traffic to the new revision (0: a preview that only requests "
        "matched by traffic.canaryHeaders reach)",
    )
    pause_seconds: float = Field(30.0, ge=0)
    pause: ManualPause | None = Field(
        None, description="{}: wait at this step until `kaip rollout promote`"
    )


class Gates(SpecModel):
    """What the new revision must show at each step, compared with the stable one."""

    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_p99_latency_ms: float | None = Field(None, gt=0)
    min_requests: int = Field(20, ge=0, description="evidence needed before a verdict")
    max_cost_per_1k_requests_usd: float | None = Field(
        None,
        gt=0,
        alias="maxCostPer1kRequestsUsd",  # the generator would spell it ...Per1KRequests...
        description="cost budget: roll back a canary whose requests cost more than this many "
        "USD per 1,000 (usage basis, docs/observability.md); judged by kaip up",
    )
    max_cost_ratio: float | None = Field(
        None,
        gt=0,
        description="cost budget: roll back a canary whose cost per 1,000 requests exceeds "
        "this multiple of the stable revision's (e.g. 1.5); judged by kaip up",
    )
    max_p95_time_to_first_token_ms: float | None = Field(
        None,
        gt=0,
        description="GenAI SLO: roll back a canary whose p95 time to the first output token "
        "(the replicas' gen_ai.server.time_to_first_token histograms) exceeds this many ms",
    )
    max_p95_time_per_output_token_ms: float | None = Field(
        None,
        gt=0,
        description="GenAI SLO: roll back a canary whose p95 time per output token after the "
        "first (gen_ai.server.time_per_output_token) exceeds this many ms",
    )
    max_time_to_first_token_ratio: float | None = Field(
        None,
        gt=0,
        description="GenAI SLO: roll back a canary whose p95 time to first token exceeds this "
        "multiple of the stable revision's (e.g. 1.5)",
    )
    max_time_per_output_token_ratio: float | None = Field(
        None,
        gt=0,
        description="GenAI SLO: roll back a canary whose p95 time per output token exceeds "
        "this multiple of the stable revision's (e.g. 1.5)",
    )

    @property
    def judges_genai(self) -> bool:
        """Whether any gate needs the GenAI histograms (time to first / per output token)."""
        return any(
            limit is not None
            for limit in (
                self.max_p95_time_to_first_token_ms,
                self.max_p95_time_per_output_token_ms,
                self.max_time_to_first_token_ratio,
                self.max_time_per_output_token_ratio,
            )
        )


class QueryCheck(SpecModel):
    """A PromQL query whose result must stay within ``min``/``max`` at every step.

    ``{{name}}``, ``{{namespace}}``, ``{{revision}}`` (the new one) and ``{{stableRevision}}``
    are filled in before the query is sent. A query with no result (no data yet, or Prometheus
    not answering) holds the step, as missing evidence does; a result out of bounds rolls back.
    """

    name: CheckName
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    max: float | None = Field(None, description="fail when the result is above this")
    min: float | None = Field(None, description="fail when the result is below this")

    @model_validator(mode="after")
    def _bounded(self) -> QueryCheck:
        if self.max is None and self.min is None:
            raise FieldProblem(
                "max", "a query check needs max or min", "e.g. max: 0.05 for an error ratio"
            )
        if self.max is not None and self.min is not None and self.min > self.max:
            raise FieldProblem(
                "min", f"min {self.min:g} is above max {self.max:g}", "swap them, or drop one"
            )
        for variable in _VARIABLE.findall(self.query):
            if variable not in QUERY_VARIABLES:
                raise FieldProblem(
                    "query",
                    f"{{{{{variable[:40]}}}}} is not a variable kaip fills in",
                    f"use one of {', '.join('{{' + v + '}}' for v in QUERY_VARIABLES)}",
                )
        return self


HookType = Literal["pre-rollout", "rollout", "post-rollout"]
"""When a webhook is called (Flagger's names): ``pre-rollout`` once before the new revision gets
any traffic (a refusal rolls it back), ``rollout`` at every step (a vote, the default),
``post-rollout`` once when the rollout has ended, told the outcome (its answer changes nothing)."""


class WebhookCheck(SpecModel):
    """An HTTP endpoint that votes on every step: 2xx passes; any other answer, or none within
    ``timeoutSeconds``, rolls back. It is POSTed the step as JSON (fields: see the README).
    ``type`` moves the call to before the rollout or after it (see :data:`HookType`)."""

    name: CheckName
    type: HookType | None = Field(
        None,
        description="pre-rollout: once before any traffic, a refusal rolls back; rollout (the "
        "default): a vote at every step; post-rollout: told the outcome once it has ended",
    )
    url: HttpUrl
    timeout_seconds: float = Field(10.0, gt=0, le=MAX_WEBHOOK_TIMEOUT_SECONDS)
    metadata: dict[str, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict, max_length=MAX_METADATA, description="sent along in the body"
    )


class Analysis(SpecModel):
    """Checks beyond the built-in gates, judged by the same policy on both targets."""

    interval_seconds: float = Field(
        10.0, ge=1, le=3600, description="how often each check is asked again during a step"
    )
    prometheus: HttpUrl | None = Field(None, description="the Prometheus the queries are sent to")
    queries: list[QueryCheck] = Field(default_factory=list, max_length=MAX_QUERIES)
    webhooks: list[WebhookCheck] = Field(default_factory=list, max_length=MAX_WEBHOOKS)

    def hooks(self, phase: HookType) -> list[WebhookCheck]:
        """The webhooks called at ``phase`` (``rollout``: those with no ``type`` too)."""
        return [w for w in self.webhooks if (w.type or "rollout") == phase]

    @property
    def judges_steps(self) -> bool:
        """Whether any check is asked at every step (queries, ``rollout`` webhooks)."""
        return bool(self.queries or self.hooks("rollout"))

    @model_validator(mode="after")
    def _consistent(self) -> Analysis:
        if self.queries and self.prometheus is None:
            raise FieldProblem(
                "prometheus",
                "queries need a Prometheus to ask",
                "set prometheus: http://HOST:9090 (its HTTP API's base URL)",
            )
        names = [q.name for q in self.queries] + [w.name for w in self.webhooks]
        for name in names:
            if names.count(name) > 1:
                raise FieldProblem(
                    "queries", f"the check name {name!r} is used twice", "give each its own name"
                )
        return self


class Traffic(SpecModel):
    """Which requests reach the new revision whatever its weight (by header or cookie: test traffic
    first), and
    whether it gets a copy of the rest (``mirror``: shadow traffic, answers discarded)."""

    canary_headers: HeaderMatches = Field(
        default_factory=dict,
        description="a request carrying any of these headers with exactly this value goes to "
        "the new revision while it runs (names ignore case)",
    )
    canary_cookies: CookieMatches = Field(
        default_factory=dict,
        description="a request carrying any of these cookies with exactly this value goes to "
        "the new revision while it runs (names and values are exact)",
    )
    mirror: bool = Field(
        False,
        description="while the new revision runs, a copy of every request the stable one "
        "serves goes to it too; its answers are discarded (clients only ever get stable's) but "
        "count as its evidence for the gates",
    )


NotificationFormat = Literal["slack", "cloudevents"]


class Notification(SpecModel):
    """A webhook told of the rollout's start, each step, its promotion, rollback or abort.

    ``slack``: an incoming-webhook message (``{"text": ...}``); ``cloudevents``: a CloudEvent
    in structured JSON, type ``dev.kaip.rollout.EVENT``. Sent in order, retried, never waited for.
    """

    url: HttpUrl
    format: NotificationFormat = "slack"


BLUE_GREEN_STEPS: list[dict[str, Any]] = [{"weight": 0, "pause": {}}]
"""``strategy: blueGreen``'s steps when none are given: the preview, until a promote."""


def _default_steps() -> list[RolloutStep]:
    return [RolloutStep(weight=10), RolloutStep(weight=50), RolloutStep(weight=100)]


class Rollout(SpecModel):
    """How a new revision replaces the stable one: canary steps judged by gates, or at once."""

    strategy: Literal["canary", "replace", "blueGreen"] = Field(
        "canary",
        description="canary: steps of growing weight judged by the gates; replace: all at once; "
        "blueGreen: the new revision at full size, reached only through the preview route "
        "(traffic.canaryHeaders/canaryCookies) at 0 %, then all traffic at once on promote "
        "(pause: {}, the default step) or once the gates pass after pauseSeconds",
    )
    steps: list[RolloutStep] = Field(
        default_factory=_default_steps, min_length=1, max_length=MAX_ROLLOUT_STEPS
    )
    gates: Gates = Field(default_factory=Gates)
    progress_deadline_seconds: float | None = Field(
        None,
        gt=0,
        le=MAX_DEADLINE_SECONDS,
        description="the longest the new revision may take to become ready, and a step may "
        "wait for minRequests once its pause is over; then onNoEvidence decides (unset: wait)",
    )
    on_no_evidence: Literal["abort", "promote"] | None = Field(
        None,
        description="at the progress deadline, a step short of evidence: abort (the default: "
        "stable keeps all traffic) or promote (the step passes as if it had its evidence)",
    )
    analysis: Analysis | None = Field(
        None, description="PromQL queries and webhooks that must pass at every step, too"
    )
    traffic: Traffic | None = Field(
        None,
        description="requests routed to the new revision by header, and mirroring to it, at "
        "every step",
    )
    notifications: list[Notification] | None = Field(
        None, max_length=MAX_NOTIFICATIONS, description="webhooks told of every rollout move"
    )

    @model_validator(mode="before")
    @classmethod
    def _blue_green_default_steps(cls, data: Any) -> Any:
        """blueGreen without ``steps``: one preview step that waits for ``kaip rollout promote``."""
        if isinstance(data, dict) and data.get("strategy") == "blueGreen" and "steps" not in data:
            return {**data, "steps": BLUE_GREEN_STEPS}
        return data

    @property
    def no_evidence(self) -> Literal["abort", "promote"]:
        """``onNoEvidence`` with its default filled in (unset stays out of revision ids)."""
        return self.on_no_evidence or "abort"

    @model_validator(mode="after")
    def _weights_increase(self) -> Rollout:
        if self.traffic is not None and self.traffic.mirror and self.strategy == "replace":
            raise FieldProblem(
                ("traffic", "mirror"),
                "traffic.mirror needs strategy: canary (replace sends all traffic at once)",
                "set strategy: canary with a first step of weight 0 to shadow the new revision",
            )
        if self.strategy == "blueGreen":
            self._blue_green()
        if self.strategy == "replace" and self.analysis is not None:
            for index, hook in enumerate(self.analysis.webhooks):
                if hook.type == "pre-rollout":
                    raise FieldProblem(
                        ("analysis", "webhooks", index, "type"),
                        "a pre-rollout webhook needs strategy: canary or blueGreen (replace sends "
                        "all traffic at once, with no moment before it)",
                        "set strategy: canary (steps: [{weight: 100}] moves all at once after it)",
                    )
        weights = [s.weight for s in self.steps]
        for i in range(1, len(weights)):
            if weights[i] <= weights[i - 1]:
                raise FieldProblem(
                    "steps",
                    f"step weights must be strictly increasing (got {weights})",
                    "each step sends more traffic than the one before, e.g. 10, 50, 100",
                )
        return self

    def _blue_green(self) -> None:
        weights = [s.weight for s in self.steps]
        if weights != [0]:
            raise FieldProblem(
                "steps",
                f"strategy blueGreen has one step, the preview at weight 0 (got weights {weights})",
                "leave steps out for [{weight: 0, pause: {}}] (promote by hand), or give "
                "[{weight: 0, pauseSeconds: 300}] to promote once the gates pass",
            )
        traffic = self.traffic
        if traffic is None or not (traffic.canary_headers or traffic.canary_cookies):
            raise FieldProblem(
                "strategy",
                "strategy blueGreen needs a preview route: traffic.canaryHeaders or "
                "traffic.canaryCookies (the only way to reach the new revision before promotion)",
                "e.g. traffic: {canaryHeaders: {X-Preview: 'yes'}}",
            )


__all__ = [
    "BLUE_GREEN_STEPS",
    "MAX_ROLLOUT_STEPS",
    "QUERY_VARIABLES",
    "Analysis",
    "Gates",
    "HookType",
    "ManualPause",
    "Notification",
    "NotificationFormat",
    "QueryCheck",
    "Rollout",
    "RolloutStep",
    "Traffic",
    "WebhookCheck",
]

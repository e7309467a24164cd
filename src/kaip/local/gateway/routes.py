"""The gateway's routing table: what the controller hands over, and its compiled lookup form.

Owns the public value types :class:`Backend` and :class:`Route` (the controller's side of the
interface) and :class:`RouteTable`, an immutable index built once per ``set_routes`` so the
request path does dictionary lookups only. Never does I/O and never chooses a backend (that is
:mod:`kaip.local.gateway.balance`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from kaip.protocol.model_paths import ModelPath, split_model_path

RouteKind = Literal["model", "app"]


@dataclass(frozen=True)
class Backend:
    """One ready replica the gateway may send requests to."""

    replica: str
    revision: str
    host: str
    port: int


@dataclass(frozen=True)
class Route:
    """Where requests for one Model or App go.

    ``weights`` maps revision -> percent (sums to 100). ``backends`` holds ready replicas only and
    may be empty while scaled to zero or starting; requests are then held.
    ``response_timeout_s`` is how long a replica may take to send its response head (status and
    headers) before the gateway gives up on it; None means the gateway's default. A streamed
    body is not limited once the head is in. ``max_request_bytes`` bounds the request bodies the
    gateway buffers for the route (a Model's ``serve.maxRequestBytes``); None means the
    gateway's default for its kind.

    Models only: ``revision_names`` maps revisions to the names clients use for them (OIP
    paths, the OpenAI ``model``); a revision left out serves ``name``. A name only some live
    revisions serve (a rollout that changes ``serve.names``) goes to those only. ``openai``
    says whether the model serves the OpenAI API (if not, the gateway refuses ``/v1`` requests
    for it and leaves it out of ``/v1/models``). ``created`` is when the Model was created
    (seconds since the epoch) for its OpenAI model cards; None: when the gateway first saw it.
    """

    kind: RouteKind
    name: str
    weights: Mapping[str, int]
    backends: tuple[Backend, ...]
    response_timeout_s: float | None = None
    max_request_bytes: int | None = None
    revision_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    openai: bool = True
    created: float | None = None
    owner: str = ""
    """The team that owns the resource (``spec.owner``): a label of the gateway's metrics."""
    canary: str = ""
    """The revision a rollout is bringing in (empty when none runs)."""
    canary_headers: Mapping[bytes, bytes] = field(default_factory=dict)
    """Lower-cased header name -> value: a request carrying any of them goes to ``canary``
    whatever its weight, while the canary has a ready replica (``rollout.traffic``)."""
    canary_cookies: Mapping[bytes, bytes] = field(default_factory=dict)
    """Cookie name -> value: a request whose ``Cookie`` carries any of them goes to ``canary``
    as with ``canary_headers``."""
    mirror: bool = False
    """Copy every request that goes to another revision to ``canary`` as well, its answer
    discarded (``rollout.traffic.mirror``), while the canary has a ready replica."""
    prefix_affinity: bool = False
    """Send OpenAI requests that share a long prompt prefix to the replica that was sent it
    (``serve.routing: prefix-affinity``, :mod:`kaip.local.gateway.prefix`)."""

    def __post_init__(self) -> None:
        if self.response_timeout_s is not None and not self.response_timeout_s > 0:
            raise ValueError(f"{self.kind} {self.name!r}: response_timeout_s must be > 0")
        if self.max_request_bytes is not None and self.max_request_bytes < 0:
            raise ValueError(f"{self.kind} {self.name!r}: max_request_bytes must be >= 0")

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the route answers to, the first revision's first."""
        names = [n for rev in self.weights for n in self.names_of(rev)]
        names += [n for rev in self.revision_names for n in self.names_of(rev)]
        return tuple(dict.fromkeys(names)) or (self.name,)

    def names_of(self, revision: str) -> tuple[str, ...]:
        return self.revision_names.get(revision) or (self.name,)


@dataclass(frozen=True)
class CompiledRoute:
    """A :class:`Route` indexed for the hot path.

    ``cumulative`` lists ``(running total, revision)`` over the revisions that have both weight
    and ready backends, so a weighted choice is one bisect; when no weighted revision has a
    backend but some backend exists, every revision with backends gets an equal share, so a
    request is still served rather than held behind a revision that cannot answer.
    """

    route: Route
    by_revision: Mapping[str, tuple[Backend, ...]]
    cumulative: tuple[tuple[float, str], ...]
    total: float
    only_revision: Mapping[str, str] = field(default_factory=dict)
    """Served names that one live revision alone serves, and that revision."""

    @property
    def name(self) -> str:
        return self.route.name

    @property
    def has_backends(self) -> bool:
        return bool(self.route.backends)

    def matched_revision(self, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
        """The canary, when ``headers`` carry one of its ``canary_headers`` or
        ``canary_cookies`` and it can serve."""
        wanted = self.route.canary_headers
        cookies = self.route.canary_cookies
        if not (wanted or cookies) or self.route.canary not in self.by_revision:
            return None
        for name, value in headers:
            lower = name.lower()
            if wanted.get(lower) == value.strip():
                return self.route.canary
            if cookies and lower == b"cookie":
                for pair in value.split(b";"):
                    key, _, got = pair.strip().partition(b"=")
                    if cookies.get(key) == got:
                        return self.route.canary
        return None

    def mirror_to(self, revision: str) -> tuple[Backend, ...]:
        """The canary's replicas, when a request going to ``revision`` is to be mirrored."""
        route = self.route
        if not route.mirror or revision == route.canary:
            return ()
        return self.by_revision.get(route.canary, ())


def compile_route(route: Route) -> CompiledRoute:
    """Index one route: backends per revision and the cumulative weights of serving revisions."""
    by_revision: dict[str, list[Backend]] = {}
    for backend in route.backends:
        by_revision.setdefault(backend.revision, []).append(backend)
    serving = [(rev, float(w)) for rev, w in route.weights.items() if w > 0 and rev in by_revision]
    if not serving:
        serving = [(rev, 1.0) for rev in sorted(by_revision)]
    cumulative: list[tuple[float, str]] = []
    running = 0.0
    for rev, weight in serving:
        running += weight
        cumulative.append((running, rev))
    revisions = list(dict.fromkeys([*route.weights, *by_revision]))
    only: dict[str, str] = {}
    if len(revisions) > 1:
        for name in route.names:
            having = [rev for rev in revisions if name in route.names_of(rev)]
            if len(having) == 1:
                only[name] = having[0]
    return CompiledRoute(
        route=route,
        by_revision={rev: tuple(bs) for rev, bs in by_revision.items()},
        cumulative=tuple(cumulative),
        total=running,
        only_revision=only,
    )


@dataclass(frozen=True)
class RouteTable:
    """All routes, by kind and name; replaced whole on every ``set_routes``.

    ``models`` and ``apps`` are keyed by resource name; ``served`` maps each served name of a
    Model to its route.
    """

    models: Mapping[str, CompiledRoute] = field(default_factory=dict)
    apps: Mapping[str, CompiledRoute] = field(default_factory=dict)
    largest_model_request: int | None = None  # the OpenAI routes name their model in the body
    served: Mapping[str, CompiledRoute] = field(default_factory=dict)

    @classmethod
    def build(cls, routes: Sequence[Route]) -> RouteTable:
        models: dict[str, CompiledRoute] = {}
        apps: dict[str, CompiledRoute] = {}
        served: dict[str, CompiledRoute] = {}
        for route in routes:
            target = models if route.kind == "model" else apps
            if route.name in target:
                raise ValueError(f"two {route.kind} routes are named {route.name!r}")
            compiled = target[route.name] = compile_route(route)
            if route.kind != "model":
                continue
            for name in route.names:
                other = served.get(name)
                if other is not None:
                    raise ValueError(
                        f"models {other.name!r} and {route.name!r} both serve the name {name!r}"
                    )
                served[name] = compiled
        limits = [r.max_request_bytes for r in routes if r.kind == "model"]
        largest = None if None in limits or not limits else max(x for x in limits if x is not None)
        return cls(models=models, apps=apps, largest_model_request=largest, served=served)

    def lookup(self, kind: RouteKind, name: str) -> CompiledRoute | None:
        return (self.models if kind == "model" else self.apps).get(name)

    def find_model(self, rest: str) -> tuple[CompiledRoute, ModelPath] | None:
        """The Model route and path parts for ``rest``, the decoded path after ``/v2/models/``."""
        found = split_model_path(rest, self.served.__contains__)
        return None if found is None else (self.served[found.name], found)

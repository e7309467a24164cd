"""What the portal needs from a platform: one Protocol, one implementation per target.

The pages and the ``/api/v1`` handlers (:mod:`kaip.portal.app`) read and act through
:class:`PortalSource` only. :class:`kaip.portal.local.LocalSource` answers from ``kaip up``'s
controller and ``.kaip/state.db``; :class:`kaip.portal.kube.KubeSource` from the custom
resources on a cluster (their ``status``, the Events the operator posts) and acts by writing the
annotation ``kaip rollout promote|abort|undo`` writes. Every method is a coroutine: a source
that does blocking I/O runs it off the event loop.

A *row* (:meth:`PortalSource.rows`) is a plain mapping, the shape the pages render:

* ``kind``, ``name``, ``owner``, ``url`` (where it answers), ``stable`` and ``canary``
  (revisions; canary None when no rollout runs), ``weights`` (revision -> percent),
  ``desired`` (replicas asked for), ``ready`` (bool);
* ``replicas``: each ``id``, ``revision``, ``phase``, ``health``, ``restarts``, ``port``,
  ``routed``;
* ``rollout``: None, or ``id``, ``strategy``, ``from``, ``to``, ``step`` (from 1), ``steps``
  (weights), ``paused``, ``canary`` (``requests``, ``errors``, ``p99_ms``, each may be None),
  ``verdict`` (None or ``action`` and ``reason``);
* ``traffic``: None, or ``requests``, ``rate``, ``error_pct``, ``p99_le_s``.

A *rollout record* (:meth:`PortalSource.history`) has ``id``, ``from_revision``,
``to_revision``, ``strategy``, ``status``, ``started_at``, ``finished_at`` (epoch seconds or
None), ``reason`` and ``verdicts``, each verdict ``step_index`` (from 0), ``weight``,
``action``, ``reason``, ``at`` and the evidence ``canary_requests``, ``canary_errors``,
``canary_p99_ms``, ``stable_requests``, ``stable_errors``, ``stable_p99_ms`` (numbers or None).

Pure declarations: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kaip.dora import Event
from kaip.local.controller.auth import Principal

Action = Literal["promote", "abort", "undo"]
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Entry:
    """What the catalog searches, filters and pages by, for one resource."""

    name: str
    """The resource's key in the portal's URLs (``NAMESPACE:NAME`` across namespaces)."""
    owner: str


@dataclass(frozen=True)
class Deployments:
    """The deployment events before a window's end, and each resource's owner."""

    events: Sequence[Event]
    owners: Mapping[str, str]


@dataclass(frozen=True)
class Playground:
    """Where the playground sends a Model's requests: the base URL, the name, and which of
    its protocols the page offers (an OIP v2 request form, an OpenAI chat box, or both)."""

    base_url: str
    served: str
    protocols: tuple[str, ...] = ("oip-v2",)
    client: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """How to reach ``base_url``: keyword arguments for :class:`httpx.AsyncClient` (on a
    cluster the API server's service proxy, with the portal's own credentials)."""


@dataclass(frozen=True)
class Overview:
    """What a resource page's overview shows: the manifest as declared and how to reach it."""

    kind: str
    manifest: Mapping[str, Any]
    """``apiVersion``, ``kind``, ``metadata`` (name, namespace, labels) and ``spec``."""
    base_url: str
    """Where a Model's protocols answer (the gateway, or its Service), or an App's own URL."""
    served: tuple[str, ...]
    protocols: tuple[str, ...]
    note: str = ""
    """Where ``base_url`` is reachable from, when that is not the user's machine."""


class PortalSource(Protocol):
    """The platform behind the portal."""

    @property
    def live_every_s(self) -> float:
        """How often a live page looks at its resource."""
        ...

    @property
    def profiles(self) -> bool:
        """Whether :meth:`profile` can profile a Model's replica here."""
        ...

    @property
    def traffic_note(self) -> str:
        """Where the catalog's traffic, cost and energy figures come from (HTML, shown under it)."""
        ...

    async def entries(self) -> Sequence[Entry]:
        """Every resource the portal shows."""
        ...

    async def rows(self, names: Sequence[str]) -> list[Row]:
        """The rows of those of ``names`` that exist, in that order."""
        ...

    async def history(self, name: str, limit: int) -> list[Row]:
        """Its latest ``limit`` rollouts, newest first, each with its verdicts."""
        ...

    async def verdicts(self, name: str) -> list[Row]:
        """The verdicts of the rollout it is in (empty when none runs)."""
        ...

    async def deployments(self, until: float) -> Deployments:
        """The deployment events known before ``until`` and the owners, for DORA."""
        ...

    async def act(
        self,
        row: Row,
        action: Action,
        principal: Principal,
        to_revision: str | None,
        *,
        who: str | None = None,
        full: bool = False,
    ) -> str:
        """Promote (``full``: skipping the remaining steps), abort or roll back the resource
        of ``row`` for ``principal``, recorded as done by ``who`` (default: the principal's
        name); what was done, in a sentence. Raises :class:`~kaip.errors.ForbiddenError` when
        the principal may not, :class:`~kaip.errors.PlatformError` when it cannot be done now."""
        ...

    async def playground(self, name: str) -> Playground | None:
        """Where to send a playground request for ``name`` (None: no playground)."""
        ...

    async def overview(self, name: str) -> Overview | None:
        """Its manifest and endpoints (None: no such resource)."""
        ...

    async def profile(
        self, name: str, principal: Principal, seconds: float
    ) -> tuple[str, str, str] | None:
        """A CPU profile of one of its ready replicas as folded stacks, with the replica and its
        revision: (replica, revision, collapsed); None where this source cannot profile.
        Raises :class:`~kaip.errors.ForbiddenError` when the principal may not."""
        ...

    async def traffic_series(self, name: str) -> tuple[list[Row] | None, str]:
        """Its recent traffic, one point per interval (``at``, ``rate``, ``error_pct``,
        ``p99_le_s``), oldest first; None with what to do instead where there is none."""
        ...

    async def log_tail(self, name: str) -> tuple[list[tuple[str, str]], str] | None:
        """The last lines of each of its replicas' logs, as (replica, line), and what to do
        instead when this source cannot read them ("" when it can); None: no such resource."""
        ...

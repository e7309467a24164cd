"""The portal's source on a cluster: kaip's custom resources, their status, and their Events.

:class:`KubeSource` reads Models, Apps and TrainingJobs in one namespace (or every namespace:
then a resource's key in the portal is ``NAMESPACE:NAME``, ``:`` being in no Kubernetes name)
with the portal's own credentials, as pages of :data:`LIST_PAGE` objects, and answers from the
list in hand: one older than :data:`LIST_TTL_S` is read again in the background, so a page
shows what the cluster said at most about a second (plus one list's time) before, and never
waits for a list but the first one and the first after an action. A row
comes from the resource's ``status`` as the operator writes it: the revisions and their weights
(``status.revisions``), readiness (the ``Ready`` condition), the rollout in flight
(``status.rollout``: stable, canary and step, the last decision and its evidence), the URL
inside the cluster. In the catalog, replicas are counts per revision (``replicas``,
``readyReplicas``); a resource's own page (one row asked for) lists its pods instead, found by
the selector kaip gives every pod of a resource (name, ``managed-by: kaip``): each pod's revision,
phase (ready, a waiting container's reason such as ``CrashLoopBackOff``, or the pod's phase),
restarts and address. Its log tail is the last :data:`~kaip.portal.logs.TAIL_LINES` lines of
each pod's main container (at most :data:`MAX_LOG_PODS` pods, :data:`LOG_BYTES` each), read
through the API server like ``kubectl logs`` at every tick of the page's log stream, so it
follows the pods live. Traffic, cost and energy figures come from Prometheus when given one
(:class:`~kaip.portal.prometheus.PrometheusTraffic`).

Rollout timelines and DORA come from the Events the operator posts for its decisions
(``CanaryStarted``, ``CanaryAdvanced``, ``CanaryPromoted``, ``CanaryRolledBack``,
``CanaryAborted``, ``RevisionReplaced``); the apiserver keeps Events for its ``--event-ttl``
(one hour by default), so those cover that long only.

Actions go through :class:`~kaip.kube.operator.rollout_client.ClusterRollouts`, exactly as
``kaip rollout promote|abort|undo -n NS`` does (the ``kaip.dev/rollout-command`` annotation;
undo puts the previous spec back), after a SubjectAccessReview that the user may ``patch`` that
resource (:mod:`kaip.portal.kube_auth`). The portal does not wait for the operator: the page's
live section shows its decision when it comes. Blocking requests run in worker threads.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from kaip.dora import Event
from kaip.errors import ForbiddenError, KaipError, PlatformError
from kaip.kube.client import Session
from kaip.kube.client.session import Credentials
from kaip.kube.operator.observe import pods as list_pods
from kaip.kube.operator.rollout_client import ClusterRollouts
from kaip.local.controller.auth import Principal
from kaip.plan.build import LABEL_NAME, LABEL_REVISION, pod_selector
from kaip.portal.kube_auth import KubeReviews, KubeUser
from kaip.portal.logs import MAX_LINE_CHARS, TAIL_LINES
from kaip.portal.prometheus import PrometheusTraffic
from kaip.portal.source import Action, Deployments, Entry, Overview, Playground, Row
from kaip.spec import API_VERSION
from kaip.spec.kinds import Serve

logger = logging.getLogger(__name__)
KINDS = ("Model", "App", "TrainingJob")
LIST_PAGE = 500
LIST_TTL_S = 1.0
MAX_OBJECTS = 20_000
MAX_EVENTS = 5_000
MAX_REPLICA_ROWS = 50
MAX_LOG_PODS = 10
LOG_BYTES = 64 * 1024
LIVE_EVERY_S = 1.0
SEPARATOR = ":"
FIRST_REVISION = "(first)"
"""A resource's first revision, when Events show it has been replaced since (which one it was
is not kept anywhere once its Events expire)."""
_DEPLOYMENT_EVENTS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "CanaryStarted": (("deploy", "started"),),
    "RevisionReplaced": (("deploy", "started"), ("rollout", "promoted")),
    "CanaryPromoted": (("rollout", "promoted"),),
    "CanaryRolledBack": (("rollout", "rolled_back"),),
    "CanaryAborted": (("rollout", "aborted"),),
}
_VERDICTS: Mapping[str, str] = {
    "CanaryStarted": "start",
    "CanaryAdvanced": "advance",
    "CanaryPromoted": "promote",
    "CanaryRolledBack": "rollback",
    "CanaryAborted": "abort",
    "RevisionReplaced": "replace",
}
_ENDINGS: Mapping[str, str] = {
    "CanaryPromoted": "promoted",
    "CanaryRolledBack": "rolled_back",
    "CanaryAborted": "aborted",
    "RevisionReplaced": "promoted",
}


class KubeSource:
    """A :class:`~kaip.portal.source.PortalSource` over a cluster's kaip resources."""

    def __init__(
        self,
        session: Session,
        namespace: str | None,
        reviews: KubeReviews,
        clock: Callable[[], float] = time.monotonic,
        traffic: PrometheusTraffic | None = None,
    ) -> None:
        self._session = session
        self._traffic = traffic
        """Where the catalog's numbers and the charts come from (None: no Prometheus given)."""
        self._namespace = namespace
        """The one namespace looked at, or None for every namespace."""
        self._reviews = reviews
        self._clock = clock
        self._snapshot: tuple[float, dict[str, dict[str, Any]]] | None = None
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None

    @property
    def live_every_s(self) -> float:
        return LIVE_EVERY_S

    @property
    def profiles(self) -> bool:
        return False

    @property
    def traffic_note(self) -> str:
        if self._traffic is None:
            return (
                "No traffic, cost or energy figures: start the portal with <code>--prometheus"
                " URL</code> (the chart's <code>metrics.prometheusUrl</code>), the Prometheus"
                " that scrapes the Models' pods."
            )
        return (
            f"Traffic is read from Prometheus ({html.escape(self._traffic.url)}), the replicas'"
            " own metrics: requests so far; req/s and the share of 5xx answers over the last 5"
            " minutes; p99 over the same 5 minutes. Cost and energy are the last hour's, the"
            " replicas' busy time shared among their requests (usage basis, as <code>kaip cost"
            " --prometheus</code> reports them; ≈ marks an estimate)."
        )

    # -- reading ----------------------------------------------------------------------------

    def key(self, body: Mapping[str, Any]) -> str:
        meta = body.get("metadata") or {}
        name = str(meta.get("name", ""))
        if self._namespace is not None:
            return name
        return f"{meta.get('namespace', '')}{SEPARATOR}{name}"

    def _where(self, key: str) -> tuple[str, str]:
        if self._namespace is not None:
            return self._namespace, key
        namespace, _, name = key.partition(SEPARATOR)
        return namespace, name

    async def objects(self) -> dict[str, dict[str, Any]]:
        """Every resource by key. The first read (and the first after an action) waits for the
        list; later ones get the list in hand and, when it is older than :data:`LIST_TTL_S`,
        start one fresh read in the background for the requests after them."""
        snapshot = self._snapshot
        if snapshot is None:
            async with self._lock:
                if self._snapshot is None:
                    self._snapshot = (self._clock(), await asyncio.to_thread(self._list))
                return self._snapshot[1]
        stale = self._clock() - snapshot[0] >= LIST_TTL_S
        if stale and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.create_task(self._reread())
        return snapshot[1]

    async def _reread(self) -> None:
        async with self._lock:
            try:
                self._snapshot = (self._clock(), await asyncio.to_thread(self._list))
            except KaipError as exc:  # the list in hand stays; the next request tries again
                logger.warning("kaip portal: listing kaip's resources failed: %s", exc.message)

    def _list(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for kind in KINDS:
            resource = self._session.resource(API_VERSION, kind)
            if resource is None:
                raise PlatformError(
                    f"the cluster does not serve {kind} in {API_VERSION}: install kaip's CRDs "
                    "(the Helm chart, or `kaip crd | kubectl apply -f -`)"
                )
            for item in self._pages(resource.path(self._namespace), f"list {kind}s"):
                item.setdefault("kind", kind)
                found[self.key(item)] = item
        return found

    def _pages(
        self, path: str, what: str, selector: str | None = None, most: int = MAX_OBJECTS
    ) -> list[dict[str, Any]]:
        """Every item of a list, read :data:`LIST_PAGE` at a time, at most ``most``."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query = {"limit": str(LIST_PAGE)}
            if token:
                query["continue"] = token
            if selector:
                query["fieldSelector"] = selector
            answer = self._session.request("GET", path, query=query, what=what) or {}
            items.extend(dict(i) for i in answer.get("items") or [])
            token = str((answer.get("metadata") or {}).get("continue") or "")
            if not token or len(items) >= most:
                return items[:most]

    async def entries(self) -> Sequence[Entry]:
        objects = await self.objects()
        return [
            Entry(key, str((body.get("spec") or {}).get("owner", "")))
            for key, body in objects.items()
        ]

    async def rows(self, names: Sequence[str]) -> list[Row]:
        objects = await self.objects()
        rows = [_row(name, objects[name]) for name in names if name in objects]
        if len(rows) == 1:  # a resource's own page: its pods rather than counts
            try:
                pods = await asyncio.to_thread(self._pods, rows[0]["name"])
            except KaipError as exc:  # e.g. a portal role without pods: the counts stay
                logger.debug("kaip portal: the pods of %s: %s", rows[0]["name"], exc.message)
            else:
                rows[0]["replicas"] = [_replica(p, rows[0]["weights"]) for p in pods]
        numbers = None if self._traffic is None else await self._traffic.catalog(self._namespace)
        for row in rows:
            if numbers is not None and row["kind"] == "Model":
                row["traffic"] = numbers.get(
                    (row["namespace"], objects[row["name"]]["metadata"]["name"])
                )
        return list(rows)

    def _pods(self, key: str) -> list[dict[str, Any]]:
        """The pods of one resource (kaip's selector for them), by name, at most
        :data:`MAX_REPLICA_ROWS`."""
        namespace, name = self._where(key)
        listed = list_pods(self._session, namespace, pod_selector(name))
        pods = sorted(
            (dict(p) for p in listed), key=lambda p: str((p.get("metadata") or {}).get("name"))
        )
        return pods[:MAX_REPLICA_ROWS]

    def _log(self, namespace: str, pod: Mapping[str, Any]) -> list[str]:
        """The last lines of a pod's main container (its first); when the last
        :data:`TAIL_LINES` lines are longer than :data:`LOG_BYTES`, the last few only."""
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        name = str(meta.get("name", ""))
        containers = [c for c in spec.get("containers") or [] if isinstance(c, Mapping)]
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}/log"
        query = {"limitBytes": str(LOG_BYTES)}
        if containers:
            query["container"] = str(containers[0].get("name", ""))
        for lines in (TAIL_LINES, 10):
            query["tailLines"] = str(lines)
            text = self._session.text(path, query=query, what=f"read the log of pod {name}")
            if len(text.encode()) < LOG_BYTES:
                break
        return [line[:MAX_LINE_CHARS] for line in text.splitlines()]

    def _events(self, key: str | None) -> list[dict[str, Any]]:
        """kaip's Events, of one resource or of all, oldest first."""
        selector = f"involvedObject.apiVersion={API_VERSION}"
        namespace = self._namespace
        if key is not None:
            namespace, name = self._where(key)
            selector += f",involvedObject.name={name}"
        path = f"/api/v1/namespaces/{namespace}/events" if namespace else "/api/v1/events"
        items = self._pages(path, "list kaip's Events", selector, MAX_EVENTS)
        items = [i for i in items if str(i.get("reason", "")) in _VERDICTS]
        return sorted(items, key=lambda i: (_at(i) or 0.0, str(i.get("metadata", {}).get("name"))))

    async def history(self, name: str, limit: int) -> list[Row]:
        objects = await self.objects()
        body = objects.get(name)
        if body is None:
            return []
        events = await asyncio.to_thread(self._events, name)
        return _timeline(body, events)[:limit]

    async def verdicts(self, name: str) -> list[Row]:
        objects = await self.objects()
        body = objects.get(name)
        if body is None or not ((body.get("status") or {}).get("rollout") or {}).get("canary"):
            return []
        events = await asyncio.to_thread(self._events, name)
        timeline = _timeline(body, events)
        running = [t for t in timeline if t["status"] == "running"]
        return list(running[0]["verdicts"]) if running else []

    async def deployments(self, until: float) -> Deployments:
        objects = await self.objects()
        events = await asyncio.to_thread(self._events, None)
        owners = {key: str((b.get("spec") or {}).get("owner", "")) for key, b in objects.items()}
        out: list[Event] = []
        promoted = {
            self.key({"metadata": i.get("involvedObject") or {}})
            for i in events
            if _ENDINGS.get(str(i.get("reason"))) == "promoted"
        }
        for key, body in objects.items():  # a resource's first revision: when it was made
            made = _time((body.get("metadata") or {}).get("creationTimestamp"))
            if made is not None and made < until:
                kind = str(body.get("kind", ""))
                first = _row(key, body)["stable"] if key not in promoted else FIRST_REVISION
                out.append(Event(0, made, kind, key, "create", "created", first))
        for item in events:
            at = _at(item)
            involved = item.get("involvedObject") or {}
            if at is None or at >= until:
                continue
            key = self.key({"metadata": involved})
            revision = _revision(item)
            for action, outcome in _DEPLOYMENT_EVENTS.get(str(item.get("reason")), ()):
                out.append(
                    Event(0, at, str(involved.get("kind", "")), key, action, outcome, revision)
                )
        out.sort(key=lambda e: (e.at, e.action != "create"))
        numbered = [
            Event(i + 1, e.at, e.kind, e.name, e.action, e.outcome, e.revision)
            for i, e in enumerate(out)
        ]
        return Deployments(numbered, owners)

    # -- acting -----------------------------------------------------------------------------

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
        kind, key = str(row["kind"]), str(row["name"])
        namespace, name = self._where(key)
        verb = "roll back" if action == "undo" else action
        what = f"{verb} {kind} {name} in {namespace}"
        if not isinstance(principal, KubeUser):
            raise ForbiddenError(f"{principal.name} may not {what}: not a Kubernetes user")
        if kind == "TrainingJob":
            raise PlatformError(f"TrainingJob {name} has no rollout to {verb}")
        await self._reviews.authorize(principal, "patch", f"{kind.lower()}s", namespace, name, what)

        def run() -> str:
            client = ClusterRollouts(self._session, namespace, name)
            if action == "undo":
                return client.undo(to_revision)
            command = client.send("promote-full" if full else action, who or principal.user)
            return (
                f"{kind} {name}: {action} sent to the operator for revision {command.revision} "
                f"(command {command.id}); its decision shows on the page when it is made"
            )

        message = await asyncio.to_thread(run)
        self._snapshot = None  # the next read shows the change
        return message

    async def playground(self, name: str) -> Playground | None:
        """A Model through the API server's service proxy to its Service (the port of its
        ``status.url``), with the portal's own credentials: the same answer from inside the
        cluster and from a laptop, needing only the chart's ``services/proxy`` rule."""
        body = (await self.objects()).get(name)
        if body is None or body.get("kind") != "Model":
            return None
        about = _overview(body)
        port = urlsplit(about.base_url).port if about.base_url else None
        namespace = (body.get("metadata") or {}).get("namespace")
        if port is None or not namespace or not about.served:
            return None
        credentials = self._session.credentials()
        service = f"{quote(name, safe='')}:{port}"
        base = f"{credentials.server}/api/v1/namespaces/{quote(str(namespace), safe='')}"
        return Playground(
            f"{base}/services/{service}/proxy",
            about.served[0],
            about.protocols,
            client=_client_options(credentials),
        )

    async def profile(
        self, name: str, principal: Principal, seconds: float
    ) -> tuple[str, str, str] | None:
        return None  # replicas' profile endpoints are not reachable from the portal here

    async def traffic_series(self, name: str) -> tuple[list[Row] | None, str]:
        if self._traffic is None:
            return None, (
                "No charts: start the portal with --prometheus URL (the Prometheus that scrapes "
                "the replicas' kaip_requests_total and latency histogram)."
            )
        body = (await self.objects()).get(name)
        if body is None or body.get("kind") != "Model":
            return None, "Charts are drawn for Models only."
        meta = body.get("metadata") or {}
        points = await self._traffic.series(str(meta.get("namespace", "")), str(meta.get("name")))
        if points is None:
            return None, f"Prometheus at {self._traffic.url} did not answer: no charts now."
        return list(points), ""

    async def log_tail(self, name: str) -> tuple[list[tuple[str, str]], str] | None:
        """The last lines of each of its pods (as ``kubectl logs --tail``), read again at every
        tick of the page's log stream; what to run instead when none can be read."""
        body = (await self.objects()).get(name)
        if body is None:
            return None
        namespace, plain = self._where(name)
        command = f"kubectl logs -n {namespace} -l {LABEL_NAME}={plain} -f --prefix"

        def read() -> tuple[list[tuple[str, str]], str]:
            try:
                pods = self._pods(name)
            except KaipError as exc:
                return [], f"The pods cannot be listed ({exc.message}): {command}"
            lines: list[tuple[str, str]] = []
            problems: list[str] = []
            for pod in pods[:MAX_LOG_PODS]:
                pod_name = str((pod.get("metadata") or {}).get("name", ""))
                try:
                    lines.extend((pod_name, line) for line in self._log(namespace, pod))
                except KaipError as exc:  # not started yet, or its node serves no logs
                    problems.append(f"{pod_name}: {exc.message}")
            if lines:
                return lines, ""
            if problems:
                return [], f"No log lines could be read ({problems[0]}); try: {command}"
            return [], f"No pods run now; when they do: {command}"

        return await asyncio.to_thread(read)

    async def overview(self, name: str) -> Overview | None:
        body = (await self.objects()).get(name)
        return None if body is None else _overview(body)


@functools.lru_cache(maxsize=4)
def _client_options(credentials: Credentials) -> Mapping[str, Any]:
    """httpx client arguments that authenticate as the session does (its CA, token or client
    certificate); kept per credentials, so a page view does not load the CA file again."""
    context = ssl.create_default_context(
        cafile=None if credentials.insecure else credentials.ca_file
    )
    if credentials.insecure:  # the kubeconfig's insecure-skip-tls-verify
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if credentials.cert_file and credentials.key_file:
        context.load_cert_chain(credentials.cert_file, credentials.key_file)
    options: dict[str, Any] = {"verify": context}
    if credentials.token:
        options["headers"] = {"Authorization": f"Bearer {credentials.token}"}
    return options


def _overview(body: Mapping[str, Any]) -> Overview:
    """The manifest as declared (no status, no managed fields) and the Service it answers on."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    kind, name, namespace = (
        str(body.get("kind", "")),
        str(meta.get("name", "")),
        meta.get("namespace"),
    )
    kept = {k: meta[k] for k in ("name", "namespace", "labels") if meta.get(k)}
    manifest = {
        "apiVersion": body.get("apiVersion", API_VERSION),
        "kind": kind,
        "metadata": kept,
        "spec": spec,
    }
    protocols = (spec.get("serve") or {}).get("protocols") or Serve().protocols
    url = str(status.get("url") or "")
    port = urlsplit(url).port
    note = (
        f"That address answers inside the cluster. From your machine: kubectl -n {namespace} "
        f"port-forward svc/{name} 8000:{port}, then use http://127.0.0.1:8000 instead."
        if url and port
        else "No address yet: the operator writes status.url once the resource is applied."
    )
    return Overview(
        kind=kind,
        manifest=manifest,
        base_url=url,
        served=tuple(str(n) for n in status.get("servedNames") or [name]),
        protocols=tuple(str(p) for p in protocols),
        note=note,
    )


def _time(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _at(event: Mapping[str, Any]) -> float | None:
    return (
        _time(event.get("lastTimestamp"))
        or _time(event.get("eventTime"))
        or _time(event.get("firstTimestamp"))
        or _time((event.get("metadata") or {}).get("creationTimestamp"))
    )


def _revision(event: Mapping[str, Any]) -> str | None:
    """The revision an operator Event names: its message starts ``revision REV: ``."""
    message = str(event.get("message", ""))
    if not message.startswith("revision "):
        return None
    revision, sep, _ = message[len("revision ") :].partition(":")
    return revision.strip() or None if sep else None


def _steps(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rollout = (body.get("spec") or {}).get("rollout") or {}
    return [s for s in rollout.get("steps") or [] if isinstance(s, Mapping)]


def _row(key: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The portal's row of one resource, from its spec and the status the operator wrote."""
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    saved = status.get("rollout") or {}
    revisions = [r for r in status.get("revisions") or [] if isinstance(r, Mapping)]
    stable = str((saved.get("stable") or {}).get("revision") or "")
    if not stable and revisions:
        stable = str(revisions[0].get("name", ""))
    canary = saved.get("canary") or {}
    replicas: list[dict[str, Any]] = []
    for revision in revisions:
        wanted, ready = int(revision.get("replicas") or 0), int(revision.get("readyReplicas") or 0)
        for i in range(min(wanted, MAX_REPLICA_ROWS - len(replicas))):
            replicas.append(
                {
                    "id": f"{str(revision.get('name', ''))[:12]}-{i + 1}",
                    "revision": str(revision.get("name", "")),
                    "phase": "ready" if i < ready else "not ready",
                    "health": "",
                    "restarts": None,
                    "port": "—",
                    "routed": int(revision.get("weight") or 0) > 0,
                }
            )
    conditions = {
        str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, Mapping)
    }
    rollout = None
    if canary.get("revision"):
        steps = _steps(body)
        step = int(canary.get("step") or 0)
        decision = saved.get("lastDecision") or {}
        numbers = (decision.get("evidence") or {}).get("canary") or {}
        ours = decision.get("revision") == canary.get("revision")
        pause = steps[step].get("pause") if step < len(steps) else None
        rollout = {
            "id": str(canary.get("stepStartedAt", "")),
            "strategy": str((spec.get("rollout") or {}).get("strategy") or "canary"),
            "from": stable,
            "to": str(canary["revision"]),
            "step": step + 1,
            "steps": [int(s.get("weight") or 0) for s in steps],
            "paused": pause is not None and not canary.get("releasedBy"),
            "canary": {
                "requests": numbers.get("requests") if ours else None,
                "errors": numbers.get("errors") if ours else None,
                "p99_ms": numbers.get("p99LatencyMs") if ours else None,
            },
            "verdict": {"action": decision.get("action"), "reason": decision.get("reason")}
            if ours and decision.get("action")
            else None,
        }
    meta = body.get("metadata") or {}
    return {
        "kind": str(body.get("kind", "")),
        "name": key,
        "namespace": str(meta.get("namespace", "")),
        "owner": str(spec.get("owner", "")),
        "names": list(status.get("servedNames") or []),
        "url": str(status.get("url") or ""),
        "stable": stable or "—",
        "canary": str(canary["revision"]) if canary.get("revision") else None,
        "weights": {str(r.get("name", "")): int(r.get("weight") or 0) for r in revisions},
        "desired": sum(int(r.get("replicas") or 0) for r in revisions),
        "ready": (conditions.get("Ready") or {}).get("status") == "True",
        "replicas": replicas,
        "rollout": rollout,
        "traffic": None,
    }


def _replica(pod: Mapping[str, Any], weights: Mapping[str, int]) -> dict[str, Any]:
    """The replica row of one pod: its revision, phase, restarts and address."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    revision = str((meta.get("labels") or {}).get(LABEL_REVISION, ""))
    containers = [c for c in status.get("containerStatuses") or [] if isinstance(c, Mapping)]
    ready = any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    waiting = _first_state(containers, "state", "waiting")
    if meta.get("deletionTimestamp"):
        phase = "terminating"
    elif ready:
        phase = "ready"
    else:
        phase = str(waiting.get("reason") or status.get("phase") or "Pending").lower()
    last = _first_state(containers, "lastState", "terminated")
    health = str(waiting.get("message") or "")
    if not health and last:
        health = f"last exit {last.get('exitCode')} ({last.get('reason') or 'terminated'})"
    first: Mapping[str, Any] = next(iter(spec.get("containers") or []), {})
    ports: list[Mapping[str, Any]] = list(first.get("ports") or [])
    port = ports[0].get("containerPort") if ports else None
    address = str(status.get("podIP") or "")
    return {
        "id": str(meta.get("name", "")),
        "revision": revision,
        "phase": phase,
        "health": health[:200],
        "restarts": sum(int(c.get("restartCount") or 0) for c in containers),
        "port": f"{address}:{port}" if address and port else address or "—",
        "routed": ready and int(weights.get(revision, 0)) > 0,
    }


def _first_state(
    containers: Sequence[Mapping[str, Any]], which: str, state: str
) -> Mapping[str, Any]:
    """The first container's ``which`` (``state`` or ``lastState``) that is ``state``
    (``waiting``, ``terminated``), or {}."""
    for container in containers:
        found = (container.get(which) or {}).get(state)
        if found:
            return dict(found)
    return {}


def _timeline(body: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[Row]:
    """The resource's rollouts, newest first, rebuilt from its Events (oldest first)."""
    steps = _steps(body)
    stable = ""
    records: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for event in events:
        reason = str(event.get("reason", ""))
        revision = _revision(event) or ""
        at = _at(event)
        said = str(event.get("message", "")).partition(": ")[2]
        if reason in ("CanaryStarted", "RevisionReplaced") or current is None:
            current = {
                "id": len(records) + 1,
                "from_revision": stable or "—",
                "to_revision": revision,
                "strategy": "replace" if reason == "RevisionReplaced" else "canary",
                "status": "running",
                "started_at": at,
                "finished_at": None,
                "reason": "",
                "verdicts": [],
            }
            records.append(current)
        index = sum(1 for v in current["verdicts"] if v["action"] == "advance")
        weight = int(steps[min(index, len(steps) - 1)].get("weight") or 0) if steps else 100
        current["verdicts"].append(
            {
                "step_index": index,
                "weight": weight,
                "action": _VERDICTS[reason],
                "reason": said,
                "at": at,
                "canary_requests": None,
                "canary_errors": None,
                "canary_p99_ms": None,
                "stable_requests": None,
                "stable_errors": None,
                "stable_p99_ms": None,
            }
        )
        if reason in _ENDINGS:
            current["status"] = _ENDINGS[reason]
            current["finished_at"] = at
            current["reason"] = said
            if _ENDINGS[reason] == "promoted":
                stable = current["to_revision"]
            current = None
    return list(reversed(records))

"""Rollout notifications: each move of a rollout POSTed to the webhooks its spec names.

Owns the outbound half of ``spec.rollout.notifications`` for both targets. A
:class:`RolloutEvent` (``started``, ``step``, ``promoted``, ``rolled_back``, ``aborted``)
becomes a Slack incoming-webhook message (:func:`slack_message`) or a CloudEvent in structured
JSON mode, made with the CloudEvents SDK (:func:`cloud_event`). :class:`Notifier` sends them:
one queue and one sender per URL, so each receiver gets a rollout's events in the order they
happened; each POST is bounded in time (:data:`TIMEOUT_SECONDS`) and tried at most
:data:`ATTEMPTS` times with growing pauses; a queue holds at most :data:`MAX_QUEUED` events
(beyond that the newest is dropped and said so). Sending never blocks the caller and never
raises into it: a rollout never waits for a receiver. ``kaip up`` runs a Notifier on its loop;
the operator, which is synchronous, a :class:`BackgroundNotifier` on a thread of its own.

Decides nothing about the rollout; reads no environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import httpx
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent

from kaip.spec.rollout import Notification

EventName = Literal["started", "step", "promoted", "rolled_back", "aborted"]
ATTEMPTS: Final = 3
FIRST_PAUSE_SECONDS: Final = 0.5
TIMEOUT_SECONDS: Final = 5.0
MAX_QUEUED: Final = 256
CLOUDEVENT_TYPE: Final = "dev.kaip.rollout."
USER_AGENT: Final = "kaip-notify"


@dataclass(frozen=True)
class RolloutEvent:
    """One move of one rollout, as both targets describe it."""

    event: EventName
    kind: str
    name: str
    from_revision: str
    to_revision: str
    reason: str
    namespace: str = ""
    target: str = "local"
    step: int | None = None
    """1-based: the step the rollout is at now (for ``started`` and ``step``)."""
    steps: int | None = None
    weight: int | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event": self.event,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "target": self.target,
            "fromRevision": self.from_revision,
            "toRevision": self.to_revision,
            "reason": self.reason,
        }
        for key, value in (("step", self.step), ("steps", self.steps), ("weight", self.weight)):
            if value is not None:
                out[key] = value
        return out

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def slack_message(event: RolloutEvent) -> dict[str, Any]:
    """A Slack incoming-webhook message (``text`` in Slack's mrkdwn)."""
    head = f"{event.kind} *{event.where}*: rollout {event.from_revision} -> {event.to_revision}"
    if event.event == "started":
        what = f"started at {event.weight}% (step 1/{event.steps})"
    elif event.event == "step":
        what = f"step {event.step}/{event.steps}: {event.weight}%"
    else:
        what = event.event.replace("_", " ")
    return {"text": f"{head} {what}: {event.reason}"}


def cloud_event(event: RolloutEvent) -> tuple[dict[str, str], bytes]:
    """The event as a CloudEvent in structured JSON mode: (headers, body)."""
    source = (
        f"/apis/kaip.dev/v1alpha1/namespaces/{event.namespace}/{event.kind.lower()}s/{event.name}"
        if event.target == "kubernetes"
        else f"kaip://local/{event.kind.lower()}s/{event.name}"
    )
    attributes = {
        "type": CLOUDEVENT_TYPE + event.event,
        "source": source,
        "subject": event.to_revision,
        "time": event.at.isoformat(),
        "datacontenttype": "application/json",
    }
    headers, body = to_structured(CloudEvent(attributes, event.data()))
    return dict(headers), body


def encode(notification: Notification, event: RolloutEvent) -> tuple[dict[str, str], bytes]:
    """What is POSTed to ``notification`` for ``event``: headers and body."""
    if notification.format == "cloudevents":
        return cloud_event(event)
    return {"content-type": "application/json"}, json.dumps(slack_message(event)).encode()


Report = Callable[[str], None]


class Notifier:
    """Sends events to their webhooks from the running event loop; see the module."""

    def __init__(
        self,
        report: Report,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        first_pause: float = FIRST_PAUSE_SECONDS,
    ) -> None:
        self._report = report
        self._transport = transport
        self._first_pause = first_pause
        self._queues: dict[str, asyncio.Queue[tuple[Notification, RolloutEvent]]] = {}
        self._senders: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    def send(self, notifications: Sequence[Notification] | None, event: RolloutEvent) -> None:
        """Queue ``event`` for every webhook in ``notifications``; returns at once."""
        for notification in notifications or ():
            queue = self._queues.get(notification.url)
            if queue is None:
                queue = self._queues[notification.url] = asyncio.Queue(MAX_QUEUED)
                self._senders.append(asyncio.get_running_loop().create_task(self._drain(queue)))
            try:
                queue.put_nowait((notification, event))
            except asyncio.QueueFull:
                self._report(
                    f"notification {event.event} of {event.kind} {event.where} dropped: "
                    f"{MAX_QUEUED} are already waiting for {notification.url}"
                )

    async def _drain(self, queue: asyncio.Queue[tuple[Notification, RolloutEvent]]) -> None:
        while True:
            notification, event = await queue.get()
            try:
                await self._deliver(notification, event)
            finally:
                queue.task_done()

    async def _deliver(self, notification: Notification, event: RolloutEvent) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport, trust_env=False, follow_redirects=False,
                timeout=TIMEOUT_SECONDS, headers={"User-Agent": USER_AGENT},
            )  # fmt: skip
        headers, body = encode(notification, event)
        why = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(self._first_pause * 2 ** (attempt - 1))
            try:
                async with asyncio.timeout(TIMEOUT_SECONDS):
                    answer = await self._client.post(
                        notification.url, content=body, headers=headers
                    )
            except (TimeoutError, httpx.HTTPError) as exc:
                why = str(exc) or f"no answer in {TIMEOUT_SECONDS:g}s"
                continue
            if 200 <= answer.status_code < 300:
                return
            why = f"HTTP {answer.status_code}"
        self._report(
            f"notification {event.event} of {event.kind} {event.where} not delivered to "
            f"{notification.url} after {ATTEMPTS} attempts: {why}"
        )

    async def flush(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for what is queued, then stop sending."""
        waits = [queue.join() for queue in self._queues.values()]
        if waits:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await asyncio.gather(*waits)
        for sender in self._senders:
            sender.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        self._senders.clear()
        self._queues.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class BackgroundNotifier:
    """A :class:`Notifier` on a thread of its own, for synchronous callers (the operator)."""

    def __init__(self, report: Report) -> None:
        self._loop = asyncio.new_event_loop()
        self._notifier = Notifier(report)
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="kaip-notify", daemon=True
        )
        self._thread.start()

    def send(self, notifications: Sequence[Notification] | None, event: RolloutEvent) -> None:
        if notifications and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._notifier.send, notifications, event)

    def close(self, grace: float = 5.0) -> None:
        """Send what is queued for up to ``grace`` seconds, then stop the thread (once)."""
        if not self._thread.is_alive():
            return
        done = asyncio.run_coroutine_threadsafe(self._notifier.flush(grace), self._loop)
        with contextlib.suppress(Exception):
            done.result(timeout=grace + 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


__all__ = [
    "BackgroundNotifier",
    "EventName",
    "Notifier",
    "RolloutEvent",
    "cloud_event",
    "encode",
    "slack_message",
]

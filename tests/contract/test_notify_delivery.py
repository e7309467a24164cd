"""kaip.notify against a real HTTP receiver on 127.0.0.1: order, retries, never blocking.

The operator's :class:`~kaip.notify.BackgroundNotifier` is driven from this (synchronous)
thread, as the operator drives it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kaip.notify import BackgroundNotifier, RolloutEvent
from kaip.spec.rollout import Notification


@contextmanager
def receiver(release: threading.Event, refuse: int) -> Iterator[tuple[str, list[Any]]]:
    got: list[Any] = []
    calls = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            release.wait(60)  # holds every answer until the test lets it go
            calls[0] += 1
            code = 500 if calls[0] <= refuse else 204
            if code == 204:
                got.append(body)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/hook", got
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()


def test_events_go_out_in_order_through_refusals_and_send_never_waits_for_the_receiver() -> None:
    release = threading.Event()
    problems: list[str] = []
    notifier = BackgroundNotifier(problems.append)
    try:
        with receiver(release, refuse=1) as (url, got):
            targets = [Notification(url=url, format="cloudevents")]
            for event in ("started", "step", "promoted"):
                notifier.send(
                    targets, RolloutEvent(event, "Model", "digits", "a", "b", f"{event} now")
                )  # type: ignore[arg-type]
            # every send returned while the receiver still holds its first answer
            assert got == []
            release.set()
            notifier.close(grace=30)
            assert [b["type"] for b in got] == [
                "dev.kaip.rollout.started", "dev.kaip.rollout.step", "dev.kaip.rollout.promoted",
            ]  # fmt: skip
    finally:
        notifier.close(grace=1)
    assert problems == []  # the refused first attempt was retried, not reported


def test_an_undeliverable_event_is_reported_after_its_attempts() -> None:
    problems: list[str] = []
    notifier = BackgroundNotifier(problems.append)
    answer_at_once = threading.Event()
    answer_at_once.set()
    with receiver(answer_at_once, refuse=100) as (url, got):
        notifier.send([Notification(url=url)], RolloutEvent("aborted", "App", "ui", "a", "b", "x"))
        notifier.close(grace=30)
    assert got == []
    assert len(problems) == 1 and "after 3 attempts: HTTP 500" in problems[0]

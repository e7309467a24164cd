"""A real HTTP webhook receiver on 127.0.0.1: records every JSON body POSTed to it, in order.

Answers each POST with :attr:`WebhookReceiver.status` (and :attr:`WebhookReceiver.answer` as its
body), so a test decides how an analysis webhook votes, except that the first
``refuse_first[path]`` POSTs to a path get 503 (a receiver that is down for a while);
:meth:`WebhookReceiver.bodies` is what was accepted, in the order it arrived.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    def __init__(self) -> None:
        self.status = 200
        self.statuses: dict[str, int] = {}
        """Path -> the status it answers instead of :attr:`status`."""
        self.answer = "ok"
        self.url = ""
        self.refuse_first: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self._received: list[tuple[str, dict[str, str], Any]] = []
        self._lock = threading.Lock()

    def record(self, path: str, headers: dict[str, str], body: Any) -> bool:
        """Keep what arrived, unless the path is still refusing; whether it was kept."""
        with self._lock:
            if self.refused.get(path, 0) < self.refuse_first.get(path, 0):
                self.refused[path] = self.refused.get(path, 0) + 1
                return False
            self._received.append((path, headers, body))
            return True

    def received(self) -> list[tuple[str, dict[str, str], Any]]:
        with self._lock:
            return list(self._received)

    def bodies(self, path: str = "") -> list[Any]:
        return [body for at, _, body in self.received() if at.startswith(path)]


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
            raw = self.rfile.read(length)
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            kept = receiver.record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            answer = receiver.answer.encode() if kept else b"down for a while"
            self.send_response(receiver.statuses.get(self.path, receiver.status) if kept else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

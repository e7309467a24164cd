"""kaip.analysis against real HTTP servers on 127.0.0.1: what a check sends, and its bounds.

A Prometheus-shaped server and a webhook server answer as the test sets them up; the checks are
run by :func:`kaip.analysis.run_checks` exactly as ``kaip up`` and the operator run them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from kaip.analysis import MAX_WEBHOOK_ANSWER_BYTES, StepContext, run_checks
from kaip.spec.rollout import Analysis, QueryCheck, WebhookCheck

STEP = StepContext("Model", "digits", "ml", "newrev", "oldrev", 2, 3, 50, target="kubernetes")
Answer = Callable[[str, str, bytes], tuple[int, bytes]]


@contextmanager
def server(answer: Answer) -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    seen: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.command, self.path, body))
            code, out = answer(self.command, self.path, body)
            self.send_response(code)
            self.send_header("Content-Length", str(len(out)))
            if code in (301, 302):
                self.send_header("Location", "/elsewhere")
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def vector(*values: float) -> bytes:
    result = [{"metric": {"i": str(i)}, "value": [1.0, str(v)]} for i, v in enumerate(values)]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})\
        .encode()  # fmt: skip


def test_queries_are_filled_in_and_judged_one_value_or_pending() -> None:
    def prometheus(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        query = parse_qs(urlparse(path).query)["query"][0]
        if query.startswith("ratio"):
            return 200, vector(0.3)
        if query.startswith("many"):
            return 200, vector(1, 2)
        if query.startswith("bad"):
            return 400, b'{"status":"error","error":"parse error at char 3"}'
        return 200, vector()

    with server(prometheus) as (url, seen):
        analysis = Analysis(
            prometheus=url,
            queries=[
                QueryCheck(name="ratio", query='ratio{r="{{revision}}",s="{{stableRevision}}",'
                           'n="{{namespace}}",m="{{name}}"}', max=0.05),
                QueryCheck(name="many", query="many", max=5),
                QueryCheck(name="bad", query="bad((", max=5),
                QueryCheck(name="empty", query="empty", max=5),
            ],
        )  # fmt: skip
        results = asyncio.run(run_checks(analysis, STEP))
    assert [(r.check, r.status) for r in results] == [
        ("query ratio", "fail"), ("query many", "pending"), ("query bad", "pending"),
        ("query empty", "pending"),
    ]  # fmt: skip
    assert results[0].evidence == "0.3 > max 0.05"
    assert "answered 2 series" in results[1].evidence
    assert "HTTP 400" in results[2].evidence and "parse error" in results[2].evidence
    assert results[3].evidence == "no data yet"
    sent = {parse_qs(urlparse(path).query)["query"][0] for _, path, _ in seen}  # asked at once
    assert 'ratio{r="newrev",s="oldrev",n="ml",m="digits"}' in sent and len(sent) == 4


def test_an_unreachable_prometheus_is_pending_and_an_unreachable_webhook_fails() -> None:
    with server(lambda *_: (200, b"")) as (url, _):
        pass  # closed: nothing listens there any more
    analysis = Analysis(
        prometheus=url,
        queries=[QueryCheck(name="q", query="up", max=1)],
        webhooks=[WebhookCheck(name="w", url=f"{url}/hook")],
    )
    query, hook = asyncio.run(run_checks(analysis, STEP))
    assert query.status == "pending" and "cannot ask Prometheus" in query.evidence
    assert hook.status == "fail" and "cannot reach" in hook.evidence


def test_a_webhook_gets_the_step_and_votes_with_a_bounded_answer_in_bounded_time() -> None:
    def hooks(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if path == "/slow":
            time.sleep(3)
        if path == "/moved":
            return 302, b""
        if path == "/big":
            return 500, b"y" * (MAX_WEBHOOK_ANSWER_BYTES * 10)
        return 200, b"looks good"

    with server(hooks) as (url, seen):
        analysis = Analysis(
            webhooks=[
                WebhookCheck(name="ok", url=f"{url}/ok", metadata={"suite": "smoke"}),
                WebhookCheck(name="slow", url=f"{url}/slow", timeout_seconds=1),
                WebhookCheck(name="moved", url=f"{url}/moved"),
                WebhookCheck(name="big", url=f"{url}/big"),
            ]
        )
        results = asyncio.run(run_checks(analysis, STEP))
    assert [(r.check, r.status) for r in results] == [
        ("webhook ok", "pass"), ("webhook slow", "fail"), ("webhook moved", "fail"),
        ("webhook big", "fail"),
    ]  # fmt: skip
    assert results[0].evidence == "HTTP 200: looks good"
    assert results[1].evidence == "no answer in 1s"
    assert results[2].evidence == "HTTP 302"  # not followed
    assert results[3].evidence.startswith("HTTP 500: yyy") and len(results[3].evidence) < 400
    posted = {path: json.loads(body) for method, path, body in seen if method == "POST"}
    assert "/elsewhere" not in {path for _, path, _ in seen}
    assert posted["/ok"] == {
        "kind": "Model", "name": "digits", "namespace": "ml", "target": "kubernetes",
        "phase": "rollout", "revision": "newrev", "stableRevision": "oldrev", "step": 2,
        "steps": 3, "weight": 50, "check": "ok", "metadata": {"suite": "smoke"},
    }  # fmt: skip

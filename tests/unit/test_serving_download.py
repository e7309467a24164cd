"""Artifact downloads are bounded: size, total time, redirects (never https -> http).

Every server here is real, on 127.0.0.1 (TLS ones with a throwaway CA from trustme that the
download trusts through ``SSL_CERT_FILE``, as httpx reads it).
"""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from kaip.errors import ArtifactError
from kaip.serving.artifacts import resolve
from kaip.serving.download import FetchLimits
from kaip.spec import Artifact

CONTENT = b"model bytes"
DIGEST = hashlib.sha256(CONTENT).hexdigest()
Route = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """A threaded HTTP(S) server on loopback whose paths answer with the given routes."""

    def __init__(self, routes: dict[str, Route], tls: trustme.CA | None = None) -> None:
        self.hits: list[str] = []
        self.stop = threading.Event()
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                route = routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                route(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.issue_cert("127.0.0.1").configure_cert(context)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(routes: dict[str, Route], tls: trustme.CA | None = None) -> Server:
        started.append(Server(routes, tls))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    authority = trustme.CA()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return authority


def body(content: bytes, length: int | None = None) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(content) if length is None else length))
        handler.end_headers()
        handler.wfile.write(content)

    return route


def redirect(location: str, status: int = 302) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


def endless(stop: threading.Event, piece: bytes, pause: float = 0.0) -> Route:
    """A 200 without Content-Length that never ends (until the client or the test goes)."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        try:
            while not stop.is_set():
                handler.wfile.write(piece)
                handler.wfile.flush()
                if pause:
                    time.sleep(pause)
        except OSError:
            pass  # the client hung up: what a bounded download does

    return route


def fetch(url: str, tmp_path: Path, limits: FetchLimits, sha256: str | None = None) -> Path:
    artifact = Artifact(uri=url, format="onnx", sha256=sha256)
    return resolve(artifact, tmp_path, tmp_path / "cache", limits)


def leftovers(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_a_declared_size_over_the_cap_is_refused_before_the_body(
    tmp_path: Path, servers: Callable[..., Server]
) -> None:
    big = servers({"/m.onnx": body(b"x" * 4096)})
    with pytest.raises(ArtifactError, match=r"is 4 KiB, more than the limit of 1 KiB"):
        fetch(f"{big.url}/m.onnx", tmp_path, FetchLimits(max_bytes=1024))
    assert leftovers(tmp_path) == []


def test_a_body_that_runs_past_the_cap_is_cut_there(
    tmp_path: Path, servers: Callable[..., Server]
) -> None:
    stop = threading.Event()
    server = servers({"/m.onnx": endless(stop, b"y" * 65536)})
    try:
        with pytest.raises(ArtifactError, match="runs past that, more than the limit of 1 MiB"):
            fetch(f"{server.url}/m.onnx", tmp_path, FetchLimits(max_bytes=2**20))
    finally:
        stop.set()
    assert leftovers(tmp_path) == []


def test_a_download_that_drips_is_given_up_after_the_total_timeout(
    tmp_path: Path, servers: Callable[..., Server]
) -> None:
    stop = threading.Event()
    server = servers({"/m.onnx": endless(stop, b"z", pause=0.05)})
    try:
        with pytest.raises(ArtifactError, match=r"took longer than 0.5s in all"):
            fetch(f"{server.url}/m.onnx", tmp_path, FetchLimits(timeout_seconds=0.5))
    finally:
        stop.set()
    assert leftovers(tmp_path) == []


def test_redirects_within_http_are_followed_a_few_times(
    tmp_path: Path, servers: Callable[..., Server]
) -> None:
    server = servers(
        {
            "/a": redirect("/b"),
            "/b": redirect("/m.onnx", status=301),
            "/m.onnx": body(CONTENT),
            "/loop": redirect("/loop"),
            "/ftp": redirect("ftp://127.0.0.1/m.onnx"),
        }
    )
    path = fetch(f"{server.url}/a", tmp_path, FetchLimits(), sha256=DIGEST)
    assert path.read_bytes() == CONTENT and server.hits == ["/a", "/b", "/m.onnx"]
    with pytest.raises(ArtifactError, match="more than 3 redirects"):
        fetch(f"{server.url}/loop", tmp_path, FetchLimits(max_redirects=3))
    assert server.hits.count("/loop") == 4
    with pytest.raises(ArtifactError, match=r"redirected to ftp:// .* artifacts come over http"):
        fetch(f"{server.url}/ftp", tmp_path, FetchLimits())


def test_https_never_redirects_down_to_http(
    tmp_path: Path, servers: Callable[..., Server], ca: trustme.CA
) -> None:
    plain = servers({"/m.onnx": body(CONTENT)})
    secure = servers({"/down": redirect(f"{plain.url}/m.onnx"), "/m.onnx": body(CONTENT)}, tls=ca)
    with pytest.raises(ArtifactError, match=r"from https:// down to plain http://"):
        fetch(f"{secure.url}/down", tmp_path, FetchLimits())
    assert plain.hits == []  # refused before anything was asked of the http server
    assert leftovers(tmp_path) == []
    # An upgrade is fine: http -> https.
    upgrade = servers({"/up": redirect(f"{secure.url}/m.onnx")})
    assert fetch(f"{upgrade.url}/up", tmp_path, FetchLimits()).read_bytes() == CONTENT

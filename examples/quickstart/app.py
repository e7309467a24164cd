"""The quickstart's web app: a tiny page that asks the digits model through the kaip gateway.

Standard library only. kaip sets PORT; KAIP_GATEWAY_URL points at the gateway (locally) or the
Model's Service (on Kubernetes). It listens on loopback unless HOST says otherwise: its image
sets HOST=0.0.0.0, since a pod is reached on its own IP.
"""

from __future__ import annotations

import json
import os
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GATEWAY = os.environ.get("KAIP_GATEWAY_URL", "http://127.0.0.1:8080")
MODEL = os.environ.get("MODEL_NAME", "digits")
ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4,
        12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10,
        12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]  # fmt: skip


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, b"ok", "text/plain")
            return
        body = json.dumps(
            {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": ZERO}]}
        ).encode()
        request = urllib.request.Request(
            f"{GATEWAY}/v2/models/{MODEL}/infer",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                answer = json.load(response)
            digit = answer["outputs"][0]["data"][0]
            page = f"<h1>The model reads this digit as {digit}</h1>".encode()
            self._send(200, page, "text/html")
        except OSError as exc:
            self._send(502, f"model unavailable: {exc}".encode(), "text/plain")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    address = (os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8501")))
    ThreadingHTTPServer(address, Handler).serve_forever()

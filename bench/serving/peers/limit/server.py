"""The "limit" row: the least a Python server can do to answer OIP v2 infer for this model.

A raw ASGI app on uvicorn (uvloop, httptools, orjson) with a micro-batcher: every request that
arrives within one event-loop turn joins one call of the model. The model is the pipeline folded
into one affine map (checked at start to predict exactly what the pipeline predicts on every
digit). It serves one model on one path and nothing else: it is a yardstick, not a server.

Usage: python server.py MODEL.joblib --port P [--compute folded|pipeline]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from artifact import digits, fold

INFER_PATH = "/v2/models/digits/infer"
JSON_HEADERS = [(b"content-type", b"application/json")]


class Batcher:
    def __init__(self, predict: Any) -> None:
        self._predict = predict
        self._pending: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []

    def submit(self, rows: np.ndarray) -> asyncio.Future[np.ndarray]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((rows, future))
        return future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        try:
            batch = pending[0][0] if len(pending) == 1 else np.concatenate([r for r, _ in pending])
            predictions = self._predict(batch)
        except Exception as exc:
            for _, future in pending:
                future.set_exception(exc)
            return
        start = 0
        for rows, future in pending:
            future.set_result(predictions[start : start + len(rows)])
            start += len(rows)


def make_app(batcher: Batcher) -> Any:
    async def respond(send: Any, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET" and scope["path"].startswith("/v2/health"):
            await respond(send, 200, b"{}")
            return
        if scope["method"] != "POST" or scope["path"] != INFER_PATH:
            await respond(send, 404, b'{"error":"not found"}')
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        try:
            tensor = orjson.loads(b"".join(chunks))["inputs"][0]
            rows = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        except Exception as exc:
            await respond(send, 400, orjson.dumps({"error": f"bad request: {exc}"}))
            return
        predictions = await batcher.submit(rows)
        output = {
            "name": "predict",
            "shape": [len(predictions)],
            "datatype": "INT64",
            "data": predictions.tolist(),
        }
        await respond(send, 200, orjson.dumps({"model_name": "digits", "outputs": [output]}))

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--compute", choices=["folded", "pipeline"], default="folded")
    args = parser.parse_args()
    model = joblib.load(args.model)
    predict = model.predict
    if args.compute == "folded":
        folded = fold(model)
        x, _ = digits()
        if not np.array_equal(folded.predict(x), model.predict(x)):
            sys.exit("folded arithmetic disagrees with the pipeline; use --compute pipeline")
        predict = folded.predict
    uvicorn.run(
        make_app(Batcher(predict)),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()

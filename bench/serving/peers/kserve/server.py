"""KServe peer: a kserve.Model subclass answering OIP v2 infer with the sklearn pipeline.

KServe 0.21 binds REST to 0.0.0.0 and gRPC to [::] with no option to change either; for a
loopback-only benchmark both are patched to 127.0.0.1 here. Its per-request log lines (uvicorn's
access log, the latency log, the timing middleware's kserve.trace line and a FastAPI
deprecation warning repeated per request) are turned off. Everything else is KServe's default.

Usage: python server.py --model_path MODEL.joblib --http_port P --grpc_port G
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import Any

import grpc.aio._server
import joblib
import kserve
import kserve.protocol.rest.server as kserve_rest
import numpy as np
import uvicorn
from fastapi.exceptions import FastAPIDeprecationWarning
from kserve import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import generate_uuid

LOOPBACK = "127.0.0.1"


def loopback_only() -> None:
    original_config = uvicorn.Config.__init__

    def config(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        kwargs["host"] = LOOPBACK
        original_config(self, *args, **kwargs)

    uvicorn.Config.__init__ = config  # type: ignore[method-assign]
    assert kserve_rest.uvicorn.Config is uvicorn.Config

    original_add_port = grpc.aio._server.Server.add_insecure_port

    def add_insecure_port(self: Any, address: str) -> int:
        return original_add_port(self, f"{LOOPBACK}:{address.rsplit(':', 1)[1]}")

    grpc.aio._server.Server.add_insecure_port = add_insecure_port  # type: ignore[method-assign]


class Digits(kserve.Model):
    def __init__(self, name: str, model_path: str) -> None:
        super().__init__(name)
        self.model_path = model_path
        self.model: Any = None

    def load(self) -> bool:
        self.model = joblib.load(self.model_path)
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> Any:
        rows = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        predictions = self.model.predict(rows)
        output = InferOutput(name="predict", shape=list(predictions.shape), datatype="INT64")
        output.set_data_from_numpy(predictions.astype(np.int64))
        return InferResponse(
            model_name=self.name,
            infer_outputs=[output],
            response_id=payload.id or generate_uuid(),
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    loopback_only()
    # KServe 0.21 answers with FastAPI's ORJSONResponse, which the FastAPI that pip resolves
    # deprecates; the warning is printed again on every request, like a log line
    warnings.filterwarnings("ignore", category=FastAPIDeprecationWarning)
    model = Digits("digits", args.model_path)
    model.load()
    server = kserve.ModelServer(enable_latency_logging=False)
    # per-request lines: uvicorn's access log and the TimingMiddleware's "kserve.trace" line
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    sys.exit(main())

"""The model server process: ``python -m kaip.serving`` and ``kaip serve`` both land in :func:`run`.

Reads the environment once (kaip settings, ``OTEL_EXPORTER_OTLP_ENDPOINT``), configures logging
and, when an OTLP endpoint is set, the OpenTelemetry SDK; then serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from kaip.errors import KaipError
from kaip.serving.profiling import PROFILE_TOKEN_ENV
from kaip.serving.server import ServeOptions, serve
from kaip.settings import load_settings


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kaip.serving", description="Serve one Model of a kaip spec."
    )
    parser.add_argument("spec_path", type=Path, help="spec file or directory")
    parser.add_argument("--model", required=True, help="metadata.name of the Model to serve")
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port; 0 picks a free one")
    parser.add_argument("--revision", default="1", help="revision label (OIP model version)")
    parser.add_argument("--port-file", type=Path, default=None, help="write the bound port here")
    parser.add_argument(
        "--engine-url",
        default=None,
        help="serve.engine: relay to the engine serving at this URL (a pod's engine container) "
        "instead of starting it",
    )
    return parser.parse_args(argv)


def run(
    spec_path: Path,
    model: str,
    host: str | None,
    port: int | None,
    revision: str,
    port_file: Path | None = None,
    engine_url: str | None = None,
) -> int:
    """Configure the process from the environment and serve; returns the exit code."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per relayed request otherwise
    settings = load_settings()
    telemetry = None
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from kaip.telemetry.otel import configure

        telemetry = configure("kaip-serving", {"kaip.model": model, "kaip.revision": revision})
    options = ServeOptions(
        spec_path=spec_path,
        model=model,
        host=host if host is not None else settings.serving.host,
        port=port if port is not None else settings.serving.port,
        revision=revision,
        port_file=port_file,
        spans=telemetry.spans if telemetry is not None else None,
        profile_token=os.environ.get(PROFILE_TOKEN_ENV) or None,
        engine_url=engine_url,
    )
    try:
        return serve(options, settings)
    finally:
        if telemetry is not None:
            telemetry.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        return run(
            args.spec_path,
            args.model,
            args.host,
            args.port,
            args.revision,
            args.port_file,
            args.engine_url,
        )
    except KaipError as exc:
        print(exc.message, file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())

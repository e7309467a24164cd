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
from urllib.parse import urlsplit

from kaip.errors import ConfigError, KaipError
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


def engine_url(value: str | None) -> str | None:
    """``--engine-url`` as the relay uses it (no trailing slash); ConfigError unless it is an
    engine's base URL: http(s), a host, a port or none, no path beyond ``/``, no query."""
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        raise ConfigError(f"--engine-url {value[:200]!r} is not a URL: {exc}") from exc
    if (
        len(value) > 2048
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ConfigError(
            f"--engine-url {value[:200]!r} is not an engine's base URL: give its scheme, host "
            "and port only, e.g. http://127.0.0.1:8001 (the engine container beside this one)"
        )
    return value.rstrip("/")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        args.engine_url = engine_url(args.engine_url)
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

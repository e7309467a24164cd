"""``python -m kaip.serving.fetch SPEC_PATH --model NAME``: warm the artifact cache, then exit.

The init container of a model pod runs this (see :mod:`kaip.render.kube.artifacts`): it resolves
the Model's artifact exactly as the server will (downloading ``http(s)://`` and ``s3://``
artifacts into ``settings.serving.artifact_cache_dir`` and verifying their sha256), so the server
container then finds the file in the cache and starts without downloading anything.

``--report PATH`` writes what it verified or computed as one line of JSON, at most
:data:`MAX_REPORT_BYTES` bytes: ``{"sha256": HEX}`` on success, ``{"error": MESSAGE}`` (and
``"expected"``, ``"found"`` when the bytes are not the pinned ones) on failure. In a pod PATH is
the container's ``terminationMessagePath``, so the kubelet puts the line into the pod's status,
where the operator reads it (:mod:`kaip.kube.operator.artifact_pins`). ``--sha256 HEX`` is the
digest the operator pinned on first sight for a spec that pins none: bytes that hash otherwise
fail the fetch, and so the pod, naming both digests.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Final

from kaip.errors import KaipError, UntrustedArtifactError
from kaip.serving import artifacts
from kaip.serving.server import find_model
from kaip.settings import load_settings
from kaip.spec import Model

MAX_REPORT_BYTES: Final = 2048
"""The kubelet keeps at most 4096 bytes of a termination message; a report stays well under."""
_MAX_ERROR_CHARS: Final = 1500
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _digest(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise argparse.ArgumentTypeError("expected 64 lower-case hex digits")
    return value


def report_line(**fields: str) -> str:
    """One JSON line of at most :data:`MAX_REPORT_BYTES` bytes (an error message is cut)."""
    if "error" in fields:
        fields["error"] = fields["error"][:_MAX_ERROR_CHARS]
    line = json.dumps(fields, sort_keys=True, ensure_ascii=True)
    return line[:MAX_REPORT_BYTES]


def _write_report(path: Path | None, line: str) -> None:
    if path is None:
        return
    try:
        path.write_text(line + "\n")
    except OSError as exc:  # the fetch itself is what matters; say so and go on
        print(f"cannot write the report to {path}: {exc}", file=sys.stderr)


class ArtifactChanged(UntrustedArtifactError):
    """The bytes at an unpinned artifact's URI are not the ones its revision was pinned to."""

    def __init__(self, uri: str, expected: str, found: str) -> None:
        super().__init__(
            f"{uri} now has sha256 {found}, but this revision was pinned to sha256 {expected} "
            "when its first pod fetched it: new bytes at the same URI are not served under an "
            "old revision. Roll them out as a new revision (kaip apply or kaip deploy pins them, "
            "or set artifact.sha256 in the spec)"
        )
        self.expected = expected
        self.found = found


def fetch(spec_path: Path, name: str, expected: str | None) -> tuple[Path, str]:
    """Resolve Model ``name``'s artifact into the cache; its path and sha256 (or tree digest).

    ``expected`` (the operator's pin) is checked only for a spec that pins no sha256 itself:
    the spec's own pin is what the server verifies, and it wins.
    """
    settings = load_settings()
    doc = find_model(spec_path, name)
    assert isinstance(doc.resource, Model)
    artifact = doc.resource.spec.artifact
    cache = settings.serving.artifact_cache_dir
    path = artifacts.resolve(
        artifact, doc.base_dir, cache, artifacts.fetch_limits(settings.serving)
    )
    if artifact.sha256 is not None:
        return path, artifact.sha256
    digest = artifacts.content_digest(path)
    if expected is not None and digest != expected:
        if path.is_file() and path.is_relative_to(cache):
            path.unlink()  # fetched afresh next time, in case the URI serves the pinned bytes again
        raise ArtifactChanged(artifact.uri, expected, digest)
    return path, digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kaip.serving.fetch")
    parser.add_argument("spec_path", type=Path, help="spec file or directory")
    parser.add_argument("--model", required=True, help="metadata.name of the Model")
    parser.add_argument(
        "--sha256",
        type=_digest,
        default=None,
        help="the digest an unpinned artifact must have (the operator's pin on first sight)",
    )
    parser.add_argument(
        "--report", type=Path, default=None, help="write the verified digest here as JSON"
    )
    args = parser.parse_args(argv)
    try:
        path, digest = fetch(args.spec_path, args.model, args.sha256)
    except ArtifactChanged as exc:
        print(exc.message, file=sys.stderr)
        line = report_line(error=exc.message, expected=exc.expected, found=exc.found)
        _write_report(args.report, line)
        return exc.exit_code
    except KaipError as exc:
        print(exc.message, file=sys.stderr)
        _write_report(args.report, report_line(error=exc.message))
        return exc.exit_code
    _write_report(args.report, report_line(sha256=digest))
    print(f"artifact of model {args.model} ready at {path} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m kaip.serving.fetch SPEC_PATH --model NAME``: warm the artifact cache, then exit.

The init container of a model pod runs this (see :mod:`kaip.render.kube.artifacts`): it resolves
the Model's artifact exactly as the server will (downloading ``http(s)://`` and ``s3://``
artifacts into ``settings.serving.artifact_cache_dir`` and verifying their sha256), so the server
container then finds the file in the cache and starts without downloading anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kaip.errors import KaipError
from kaip.serving import artifacts
from kaip.serving.server import find_model
from kaip.settings import load_settings
from kaip.spec import Model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kaip.serving.fetch")
    parser.add_argument("spec_path", type=Path, help="spec file or directory")
    parser.add_argument("--model", required=True, help="metadata.name of the Model")
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        doc = find_model(args.spec_path, args.model)
        assert isinstance(doc.resource, Model)
        path = artifacts.resolve(
            doc.resource.spec.artifact,
            doc.base_dir,
            settings.serving.artifact_cache_dir,
            artifacts.fetch_limits(settings.serving),
        )
    except KaipError as exc:
        print(exc.message, file=sys.stderr)
        return exc.exit_code
    print(f"artifact of model {args.model} ready at {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

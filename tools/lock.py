#!/usr/bin/env python3
"""The lock files: every Python package kaip's installs take, pinned, from ranges kept open.

Owns ``requirements.lock`` (the ``dev`` extra with every extra it pulls in, pip, and the build
backend: ``make venv``, CI through ``make test``, both Dockerfiles and the benchmarks' own
virtualenv install from it) and one ``requirements.lock`` beside each benchmark peer's
``requirements.txt`` (``bench/serving/setup.sh``). pyproject.toml keeps open ranges; a lock pins
one resolution of them, made by ``uv pip compile``.

Each lock's header holds a sha256 of what it was resolved from (pyproject.toml's Python and
dependency tables, or the peer's requirements.txt), so ``--check`` tells, with no network,
whether a lock is stale; ``tests/unit/test_lock.py`` runs it. It never installs anything.

    make lock                      # re-resolve, keeping every pin that still fits the ranges
    make lock UPGRADE=1            # move every pin to the newest version the ranges allow
    python tools/lock.py --check   # exit 1 naming each stale lock
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = "3.11"  # the oldest Python pyproject.toml allows: what the images and CI run
HASH_PREFIX = "# input-sha256: "


@dataclass(frozen=True)
class Lock:
    output: Path
    source: Path
    """What it is resolved from; its hash goes into the header."""

    def digest(self) -> str:
        if self.source.name == "pyproject.toml":
            data = tomllib.loads(self.source.read_text())
            project = data["project"]
            inputs = {
                "requires-python": project.get("requires-python"),
                "dependencies": project.get("dependencies", []),
                "optional-dependencies": project.get("optional-dependencies", {}),
                "build-system": data.get("build-system", {}).get("requires", []),
            }
            text = json.dumps(inputs, sort_keys=True)
        else:
            text = self.source.read_text()
        return hashlib.sha256(text.encode()).hexdigest()

    def recorded(self) -> str | None:
        if not self.output.exists():
            return None
        for line in self.output.read_text().splitlines():
            if line.startswith(HASH_PREFIX):
                return line.removeprefix(HASH_PREFIX).split()[0]
        return None

    def rel(self, path: Path) -> str:
        return str(path.relative_to(ROOT))


def locks() -> list[Lock]:
    found = [Lock(ROOT / "requirements.lock", ROOT / "pyproject.toml")]
    for req in sorted((ROOT / "bench" / "serving" / "peers").glob("*/requirements.txt")):
        found.append(Lock(req.with_name("requirements.lock"), req))
    return found


def compile_lock(lock: Lock, uv: str, upgrade: bool) -> None:
    header = [
        f"# {lock.rel(lock.output)}: pinned from {lock.rel(lock.source)} by `make lock`"
        " (tools/lock.py); do not edit by hand.",
        f"{HASH_PREFIX}{lock.digest()}",
    ]
    args = [uv, "pip", "compile", "--quiet", "--no-header", "--python-version", PYTHON]
    args += ["--output-file", lock.output.name]
    if upgrade:
        args.append("--upgrade")
    extra_in = None
    if lock.source.name == "pyproject.toml":
        # Also pin what installs it: pip itself and the build backend (build-system.requires).
        build = tomllib.loads(lock.source.read_text()).get("build-system", {}).get("requires", [])
        extra_in = lock.output.with_name(".lock-tools.in")
        extra_in.write_text("\n".join(["pip", *build]) + "\n")
        args += ["--universal", "pyproject.toml", "--extra", "dev", extra_in.name]
    else:
        header.insert(1, "# The peer's own Python environment for bench/serving (Linux, CPython).")
        args += [lock.source.name]
    try:
        subprocess.run(args, cwd=lock.output.parent, check=True)
    finally:
        if extra_in is not None:
            extra_in.unlink(missing_ok=True)
    body = [line for line in lock.output.read_text().splitlines() if not line.startswith("# ")]
    while body and not body[0].strip():
        body.pop(0)
    lock.output.write_text("\n".join(header + body) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only tell which locks are stale")
    parser.add_argument("--upgrade", action="store_true", help="move pins to the newest allowed")
    args = parser.parse_args()
    stale = [lock for lock in locks() if lock.recorded() != lock.digest()]
    if args.check:
        for lock in stale:
            print(
                f"{lock.rel(lock.output)} is stale: {lock.rel(lock.source)} changed since it was"
                " resolved; run `make lock` and commit the result",
                file=sys.stderr,
            )
        return 1 if stale else 0
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        print("uv is not installed: `make venv` installs it (the dev extra)", file=sys.stderr)
        return 1
    for lock in locks():
        print(f"lock: resolving {lock.rel(lock.output)}", file=sys.stderr)
        compile_lock(lock, uv, args.upgrade)
    return 0


if __name__ == "__main__":
    sys.exit(main())

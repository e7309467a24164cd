"""No tracked file names a path of one particular machine (a checkout, a home directory).

Paths in the repository are relative to it, or spelled with ``~``, ``$HOME`` or an environment
variable. A test fixture that needs such a path to test path handling goes in :data:`ALLOWED`
with the reason."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]
PATTERN = r"/(work|root|home)/"

ALLOWED: dict[str, str] = {}
"""Repository path -> why it may name such a path."""


def test_no_file_names_a_machine_path() -> None:
    done = subprocess.run(
        ["git", "grep", "-nE", PATTERN, "--", ".", *(f":!{path}" for path in ALLOWED)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr  # 1: nothing found
    assert done.stdout == "", (
        "these lines name a path of one machine; make them relative, use ~ or an environment "
        f"variable, or allow the file in ALLOWED with a reason:\n{done.stdout}"
    )


def test_every_allowed_file_exists() -> None:
    assert [path for path in ALLOWED if not (ROOT / path).exists()] == []

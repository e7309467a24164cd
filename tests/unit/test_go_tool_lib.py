"""tools/lib/go-tool.sh: the cached-binary protocol the aligned Go tools' build scripts share.

The unit under test is the shell library itself, run by bash; the Go build it wraps is a shell
function the test supplies (it counts its calls), so no Go compiler runs here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

LIB = Path(__file__).parents[2] / "tools" / "lib" / "go-tool.sh"

SCRIPT = """
set -euo pipefail
source "$LIB"
build() {  # OUT: a "binary" that says which call built it; counts calls in $CALLS
    echo x >>"$CALLS"
    [[ -z "${FAIL:-}" ]] || { echo "compile error" >&2; return 1; }
    printf '#!/bin/sh\\necho built\\n' >"$1"
    chmod +x "$1"
}
go_tool_main demo v1.0.0 "$CACHE/demo" "$STAMP" build "${1:-}"
"""


def run(
    tmp_path: Path, *args: str, stamp: str = "s1", fail: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin:/usr/local/go/bin:/usr/local/bin",
        "LIB": str(LIB),
        "CACHE": str(tmp_path / "cache"),
        "CALLS": str(tmp_path / "calls"),
        "STAMP": stamp,
        "FAIL": "1" if fail else "",
    }
    return subprocess.run(
        ["bash", "-c", SCRIPT, "build.sh", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def calls(tmp_path: Path) -> int:
    path = tmp_path / "calls"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_check_builds_nothing_and_fails_while_the_binary_is_missing(tmp_path: Path) -> None:
    result = run(tmp_path, "--check")
    assert result.returncode == 1
    assert result.stdout.strip() == str(tmp_path / "cache" / "demo")
    assert calls(tmp_path) == 0


def test_builds_once_then_is_current_until_the_stamp_changes(tmp_path: Path) -> None:
    binary = tmp_path / "cache" / "demo"
    first = run(tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"{binary}\n"  # stdout is the path only; the build talks on stderr
    assert "built demo v1.0.0 in" in first.stderr
    assert subprocess.run([binary], capture_output=True, text=True, check=True).stdout == "built\n"
    assert (tmp_path / "cache" / ".stamp").read_text() == "s1\n"
    assert not (tmp_path / "cache" / "demo.tmp").exists()

    assert run(tmp_path).returncode == 0
    assert run(tmp_path, "--check").returncode == 0
    assert calls(tmp_path) == 1

    assert run(tmp_path, "--check", stamp="s2").returncode == 1  # its module changed: stale
    assert run(tmp_path, stamp="s2").returncode == 0
    assert calls(tmp_path) == 2
    assert (tmp_path / "cache" / ".stamp").read_text() == "s2\n"


def test_a_failed_build_leaves_no_binary_and_no_stamp(tmp_path: Path) -> None:
    result = run(tmp_path, fail=True)
    assert result.returncode != 0
    assert "compile error" in result.stderr
    assert not (tmp_path / "cache" / "demo").exists()
    assert not (tmp_path / "cache" / ".stamp").exists()
    assert run(tmp_path, "--check").returncode == 1

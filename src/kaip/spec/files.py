"""Finding and reading spec files, within the limits of :mod:`kaip.spec.limits`.

Expands the paths a command names into spec files (recursively, skipping hidden ones) and reads
each one as UTF-8 text without ever reading more than a spec file may hold, so a huge file, a
device or a tree of thousands of files is one located problem, not a stalled command. Never
parses YAML (the loader does).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from kaip.errors import Problem, SpecError
from kaip.spec.limits import MAX_ENTRIES, MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES

SPEC_SUFFIXES = (".yaml", ".yml")


def spec_files(paths: Sequence[str | Path]) -> list[Path]:
    """Expand files and directories (recursively, skipping hidden ones) into spec files.

    At most :data:`~kaip.spec.limits.MAX_FILES` in all, found among at most
    :data:`~kaip.spec.limits.MAX_ENTRIES` directory entries: a tree holding more is refused
    before any of its files is read.
    """
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            before = len(problems)
            found = _find(path, MAX_FILES - len(files), problems)
            if not found and len(problems) == before:
                problems.append(Problem(str(path), 1, 1, "", "no *.yaml or *.yml files here"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif path.exists():
            problems.append(
                Problem(str(path), 1, 1, "", "not a regular file", "name a spec file or directory")
            )
        else:
            problems.append(Problem(str(path), 1, 1, "", "no such file or directory"))
        if len(files) > MAX_FILES:
            problems.append(
                Problem(
                    str(path),
                    1,
                    1,
                    "",
                    f"more than {MAX_FILES} spec files to read",
                    "name the directories of the resources you mean, not a whole tree",
                )
            )
            break
    if problems:
        raise SpecError(problems)
    return files


def _find(directory: Path, room: int, problems: list[Problem]) -> list[Path]:
    """Spec files under ``directory``, sorted; stops one past ``room`` or at the entry limit."""
    found: list[Path] = []
    seen = 0
    for root, dirs, names in os.walk(directory):  # symlinked directories are not entered
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        seen += len(dirs) + len(names)
        if seen > MAX_ENTRIES:
            problems.append(
                Problem(
                    str(directory),
                    1,
                    1,
                    "",
                    f"more than {MAX_ENTRIES:,} files and directories to search",
                    "name the directories of the resources you mean, not a whole tree",
                )
            )
            return []
        for name in names:
            if name.endswith(SPEC_SUFFIXES) and not name.startswith("."):
                candidate = Path(root) / name
                if candidate.is_file():
                    found.append(candidate)
        if len(found) > room:
            break
    return sorted(found)


class TotalSpent(Exception):
    """The files of one load together passed MAX_TOTAL_BYTES (the problem is recorded)."""


def read_spec_file(path: Path, budget: int, problems: list[Problem]) -> tuple[str, int] | None:
    """One spec file's text and size, or None with a problem; never reads past its limit.

    Raises :class:`TotalSpent` when the file does not fit in what is left of ``budget``.
    """
    limit = min(MAX_FILE_BYTES, budget)
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        problems.append(Problem(str(path), 1, 1, "", f"cannot read file: {exc.strerror or exc}"))
        return None
    if len(data) > limit:
        if limit == MAX_FILE_BYTES:
            message = (
                f"file is larger than {size_text(MAX_FILE_BYTES)}, the most a spec file may be"
            )
            hint = "is this a spec? split a large one into several files"
            problems.append(Problem(str(path), 1, 1, "", message, hint))
            return None
        message = f"the spec files together are larger than {size_text(MAX_TOTAL_BYTES)}"
        problems.append(Problem(str(path), 1, 1, "", message, "load fewer files at once"))
        raise TotalSpent
    try:
        return data.decode("utf-8"), len(data)
    except UnicodeDecodeError as exc:
        problems.append(
            Problem(str(path), 1, 1, "", f"cannot read file: not UTF-8 text ({exc.reason})")
        )
        return None


def size_text(size: int) -> str:
    """``262144`` -> ``256 KiB``, ``4194304`` -> ``4 MiB``."""
    if size >= 1 << 20:
        return f"{size / (1 << 20):g} MiB"
    return f"{size / (1 << 10):g} KiB"

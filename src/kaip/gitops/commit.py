"""Writing generated files into a git repository and committing them, once, with a message.

Runs the real ``git`` binary (``subprocess``, no shell); every failure becomes a
:class:`~kaip.errors.ConfigError` that says what to do.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from kaip.errors import ConfigError

KIND_OF_COMPONENT: Final = {"model": "Model", "app": "App", "training": "TrainingJob"}
_FALLBACK_IDENTITY: Final = ("-c", "user.name=kaip", "-c", "user.email=kaip@localhost")


@dataclass(frozen=True)
class FileChange:
    """One file of the directory: ``status`` is ``added``, ``modified`` or ``removed``."""

    status: str
    path: str
    kind: str = ""
    name: str = ""
    owner: str = ""
    """The kaip resource the object belongs to, e.g. ``Model digits`` ("" when unknown)."""
    revision: str = ""


@dataclass(frozen=True)
class CommitResult:
    commit: str | None
    """The new commit's id; None when nothing changed."""
    message: str
    changes: tuple[FileChange, ...]


def _git(repo: Path, *args: str, check: bool = True) -> str:
    if shutil.which("git") is None:
        raise ConfigError("git is not installed: install git to use kaip gitops")
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ConfigError(
            f"git {args[0]} failed in {repo}: {detail[-1] if detail else done.returncode}"
        )
    return done.stdout


def _object_of(text: str) -> Mapping[str, Any]:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, Mapping) else {}


def _describe(status: str, path: str, text: str) -> FileChange:
    obj = _object_of(text)
    metadata = obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    component = KIND_OF_COMPONENT.get(str(labels.get("app.kubernetes.io/component", "")))
    resource = labels.get("app.kubernetes.io/name")
    owner = f"{component} {resource}" if component and resource else ""
    revision = str(labels.get("kaip.dev/revision", ""))
    return FileChange(
        status, path, str(obj.get("kind", "")), str(metadata.get("name", "")), owner, revision
    )


def describe_changes(changes: Sequence[FileChange], source: str) -> str:
    """A commit message: a subject naming each kaip resource that changed, then every file."""
    owners: dict[str, list[FileChange]] = {}
    for change in changes:
        if change.owner:
            owners.setdefault(change.owner, []).append(change)
    parts = []
    for owner, files in owners.items():
        statuses = {c.status for c in files}
        if statuses == {"added"}:
            parts.append(f"add {owner}")
        elif statuses == {"removed"}:
            parts.append(f"remove {owner}")
        else:
            new = sorted(
                {c.revision for c in files if c.status == "added" and c.revision}
                - {c.revision for c in files if c.status == "removed"}
            )
            revision = f" to revision {', '.join(new)}" if new else ""
            parts.append(f"update {owner}{revision}")
    subject = "kaip: " + ("; ".join(parts) if parts else "update rendered manifests")
    lines = [
        f"{c.status:<9}{c.path}" + (f" ({c.kind} {c.name})" if c.kind else "") for c in changes
    ]
    return f"{subject}\n\nRendered from {source} by kaip gitops commit.\n\n" + "\n".join(lines)


def _own_files(directory: Path, header: str) -> list[Path]:
    if not directory.is_dir():
        return []
    ours = []
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix == ".yaml":
            with path.open(encoding="utf-8", errors="replace") as handle:
                if handle.read(len(header)) == header:
                    ours.append(path)
    return ours


def commit_files(
    repo: Path,
    directory: str,
    files: Mapping[str, str],
    *,
    header: str,
    source: str,
) -> CommitResult:
    """Make ``directory`` (relative to ``repo``) hold exactly ``files`` among the files that
    start with ``header`` (the ones kaip generated), and commit that directory if it changed.
    """
    top = _git(repo, "rev-parse", "--show-toplevel", check=False).strip()
    if not top:
        raise ConfigError(
            f"--repo {repo} is not a git repository: create one with `git init {repo}` "
            "or clone the repository Argo CD or Flux watches"
        )
    relative = Path(directory)
    if relative.is_absolute() or ".." in relative.parts:
        raise ConfigError(f"--dir {directory!r} must be a path inside the repository")
    target = repo / relative
    stale = [p for p in _own_files(target, header) if p.name not in files]
    for old_file in stale:
        old_file.unlink()
    target.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (target / name).write_text(text, encoding="utf-8")
    ours = [str(relative / name) for name in files] + [str(relative / p.name) for p in stale]
    if stale:
        _git(repo, "rm", "--cached", "--quiet", "--ignore-unmatch", "--", *ours[len(files) :])
    _git(repo, "add", "--", *ours[: len(files)])
    listed = _git(repo, "diff", "--cached", "--name-status", "--no-renames", "--", *ours)
    changes = []
    for line in listed.splitlines():
        code, _, changed = line.partition("\t")
        if code.startswith("D"):
            old = _git(repo, "show", f"HEAD:{changed}", check=False)
            changes.append(_describe("removed", changed, old))
        else:
            status = "added" if code.startswith("A") else "modified"
            text = (Path(top) / changed).read_text(encoding="utf-8")
            changes.append(_describe(status, changed, text))
    if not changes:
        return CommitResult(None, "", ())
    message = describe_changes(changes, source)
    identity = () if _git(repo, "config", "user.email", check=False).strip() else _FALLBACK_IDENTITY
    committed = [c.path for c in changes]
    _git(Path(top), *identity, "commit", "--quiet", "--no-verify", "-m", message, "--", *committed)
    commit = _git(repo, "rev-parse", "HEAD").strip()
    return CommitResult(commit, message, tuple(changes))

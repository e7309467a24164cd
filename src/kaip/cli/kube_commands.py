"""``kaip apply`` and ``kaip delete``: send a spec's manifests to a cluster, report what changed.

Parses flags, finds the manifests, calls :mod:`kaip.kube.client` and prints; the client owns
every request and every error message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
import yaml

from kaip.cli.output import stderr, stdout
from kaip.errors import ConfigError

KubeconfigOption = typer.Option(
    None,
    "--kubeconfig",
    envvar="KUBECONFIG",
    help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)",
)
ContextOption = typer.Option(None, "--context", help="kubeconfig context (default: current)")
NamespaceOption = typer.Option(
    None, "--namespace", "-n", help="namespace for objects that name none (default: context's)"
)


def apply(
    path: Path = typer.Argument(..., help="spec file or directory, or rendered manifests (YAML)"),
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str | None = NamespaceOption,
    prune: bool = typer.Option(False, "--prune", help="delete objects the spec no longer has"),
    dry_run: str | None = typer.Option(
        None, "--dry-run", help="'server': the API server validates everything, persists nothing"
    ),
    force_conflicts: bool = typer.Option(
        False, "--force-conflicts", help="take over fields another field manager owns"
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until workloads are ready"),
    timeout: float = typer.Option(300.0, "--timeout", min=0, help="seconds to wait for readiness"),
) -> None:
    """Server-side apply the spec's Kubernetes objects (field manager ``kaip``)."""
    from kaip.kube.client import Session, wait_ready
    from kaip.kube.client import apply as apply_manifests

    if dry_run not in (None, "server"):
        raise ConfigError(f"--dry-run={dry_run} is not supported: use --dry-run=server")
    manifests = load_manifests(path)
    with Session.connect(kubeconfig, context) as session:
        result = apply_manifests(
            session,
            manifests,
            part_of=part_of(path, manifests),
            namespace=namespace,
            prune=prune,
            dry_run=dry_run is not None,
            force_conflicts=force_conflicts,
        )
        _print_changes(result)
        if wait and not result.dry_run:
            waited = [c.ref for c in result.changes if c.outcome.value != "pruned"]
            wait_ready(
                session,
                waited,
                timeout=timeout,
                on_wait=lambda ref, why: stderr.print(f"waiting for {ref}: {why}", markup=False),
            )
            stdout.print(f"ready: {len(waited)} object(s)")


def delete(
    path: Path = typer.Argument(..., help="spec file or directory, or rendered manifests (YAML)"),
    kubeconfig: str | None = KubeconfigOption,
    context: str | None = ContextOption,
    namespace: str | None = NamespaceOption,
    dry_run: str | None = typer.Option(
        None, "--dry-run", help="'server': the API server checks everything, deletes nothing"
    ),
) -> None:
    """Delete the spec's Kubernetes objects, and whatever else kaip applied as part of it."""
    from kaip.kube.client import Session
    from kaip.kube.client import delete as delete_manifests

    if dry_run not in (None, "server"):
        raise ConfigError(f"--dry-run={dry_run} is not supported: use --dry-run=server")
    manifests = load_manifests(path)
    with Session.connect(kubeconfig, context) as session:
        result = delete_manifests(
            session,
            manifests,
            part_of=part_of(path, manifests),
            namespace=namespace,
            dry_run=dry_run is not None,
        )
    _print_changes(result)


def _print_changes(result: Any) -> None:
    suffix = " (server dry run)" if result.dry_run else ""
    for change in result.changes:
        where = f" -n {change.ref.namespace}" if change.ref.namespace else ""
        stdout.print(f"{change.ref}{where} {change.outcome.value}{suffix}", markup=False)
    stdout.print(result.summary(), markup=False)


# -- finding the manifests ---------------------------------------------------------------------


def load_manifests(path: Path) -> list[dict[str, Any]]:
    """Kubernetes manifests from ``path``: YAML files of plain Kubernetes objects.

    kaip specs (``apiVersion: kaip.dev/...``) are refused until ``kaip.render`` can turn them
    into manifests; render them with ``kaip render`` and apply its output.
    """
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
    else:
        files = [path]
    manifests: list[dict[str, Any]] = []
    for file in files:
        for doc in _documents(file):
            api_version = str(doc.get("apiVersion", ""))
            if api_version.startswith("kaip.dev/"):
                raise ConfigError(
                    f"{file}: {doc.get('kind')} {api_version} is a kaip spec; applying specs "
                    "needs kaip.render, which is not available yet. Apply rendered manifests."
                )
            manifests.append(doc)
    if not manifests:
        raise ConfigError(f"no Kubernetes manifests in {path}")
    return manifests


def _documents(file: Path) -> Iterator[dict[str, Any]]:
    try:
        docs = list(yaml.safe_load_all(file.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{file}: not readable YAML: {exc}") from None
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ConfigError(f"{file}: every YAML document must be a Kubernetes object")
        if doc.get("kind", "").endswith("List") and isinstance(doc.get("items"), list):
            yield from doc["items"]
        else:
            yield doc


def part_of(path: Path, manifests: list[dict[str, Any]]) -> str:
    """The set's name: the manifests' common ``kaip.dev/part-of`` label, else the path's name."""
    from kaip.kube.client import PART_OF_LABEL

    labels = {((m.get("metadata") or {}).get("labels") or {}).get(PART_OF_LABEL) for m in manifests}
    if len(labels) == 1 and None not in labels:
        return str(labels.pop())
    resolved = path.resolve()
    name = resolved.name if resolved.is_dir() else resolved.stem
    if name in ("kaip", "manifests", "rendered") and not resolved.is_dir():
        name = resolved.parent.name
    # A label value: at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends.
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)[:63].strip("-_.") or "default"

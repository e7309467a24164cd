"""``kaip apply`` and ``kaip delete``: send a spec's manifests to a cluster, report what changed.

Parses flags, finds the manifests, calls :mod:`kaip.kube.client` and prints; the client owns
every request and every error message.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
import yaml

from kaip.cli.output import stderr, stdout
from kaip.errors import ConfigError
from kaip.plan import build_plan
from kaip.render.kube import render_manifests
from kaip.settings import Settings, load_settings
from kaip.spec import Model, SpecDocument, load_paths

KubeconfigOption = typer.Option(
    None,
    "--kubeconfig",
    envvar="KUBECONFIG",
    help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)",
)
ContextOption = typer.Option(None, "--context", help="kubeconfig context (default: current)")
InClusterKubeconfigOption = typer.Option(
    None,
    "--kubeconfig",
    envvar="KUBECONFIG",
    help="kubeconfig file (default: the pod's service account, then ~/.kube/config)",
)
"""For the commands that run inside the cluster too (``kaip operator``, ``kaip portal``)."""
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
        False,
        "--force-conflicts",
        help="take over fields another field manager owns, on objects kaip manages",
    ),
    adopt: bool = typer.Option(
        False,
        "--adopt",
        help="take over objects of the same name that kaip did not create (else: refused)",
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until workloads are ready"),
    timeout: float = typer.Option(300.0, "--timeout", min=0, help="seconds to wait for readiness"),
) -> None:
    """Server-side apply the spec's Kubernetes objects (field manager ``kaip``)."""
    from kaip.kube.client import Session, check_served_names, wait_ready
    from kaip.kube.client import apply as apply_manifests

    server_dry_run = _server_dry_run(dry_run)
    with Session.connect(kubeconfig, context) as session:
        manifests = load_manifests(path, namespace)
        check_served_names(session, manifests, namespace)
        result = apply_manifests(
            session,
            manifests,
            part_of=part_of(path, manifests),
            namespace=namespace,
            prune=prune,
            dry_run=server_dry_run,
            force_conflicts=force_conflicts,
            adopt=adopt,
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


def _server_dry_run(dry_run: str | None) -> bool:
    """``--dry-run=server`` is the only dry run kaip offers (client-side would prove nothing)."""
    if dry_run not in (None, "server"):
        raise ConfigError(f"--dry-run={dry_run} is not supported: use --dry-run=server")
    return dry_run is not None


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

    server_dry_run = _server_dry_run(dry_run)
    with Session.connect(kubeconfig, context) as session:
        manifests = load_manifests(path, namespace)
        result = delete_manifests(
            session,
            manifests,
            part_of=part_of(path, manifests),
            namespace=namespace,
            dry_run=server_dry_run,
        )
    _print_changes(result)


def _print_changes(result: Any) -> None:
    suffix = " (server dry run)" if result.dry_run else ""
    for change in result.changes:
        where = f" -n {change.ref.namespace}" if change.ref.namespace else ""
        stdout.print(f"{change.ref}{where} {change.outcome.value}{suffix}", markup=False)
    stdout.print(result.summary(), markup=False)


# -- finding the manifests ---------------------------------------------------------------------


def load_manifests(path: Path, namespace: str | None) -> list[dict[str, Any]]:
    """The Kubernetes manifests ``path`` stands for.

    A kaip spec (documents with ``apiVersion: kaip.dev/...``) is loaded, planned and rendered
    with ``namespace`` for resources that name none (the plan's default, ``default``, when
    None: the kubeconfig context's namespace does not reach rendering); any other YAML is taken
    as Kubernetes manifests already (``kaip render`` output, say) and sent as it is. A Model
    whose remote artifact has no ``sha256`` is pinned first (:func:`_pinned`).
    """
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
    else:
        files = [path]
    docs = [(file, doc) for file in files for doc in _documents(file)]
    specs = [f for f, d in docs if str(d.get("apiVersion", "")).startswith("kaip.dev/")]
    if specs and len(specs) == len(docs):
        settings = load_settings()
        documents = [_pinned(doc, settings) for doc in load_paths([path]).documents]
        plan = build_plan(documents, settings, namespace)
        return [dict(m) for m in render_manifests(plan)]
    if specs:
        others = sorted({str(f) for f, d in docs if f not in specs})
        raise ConfigError(
            f"{path} mixes kaip specs ({specs[0]}) with Kubernetes manifests "
            f"({', '.join(others)}); apply them separately"
        )
    if not docs:
        raise ConfigError(f"no kaip spec or Kubernetes manifests in {path}")
    return [d for _, d in docs]


def _pinned(doc: SpecDocument, settings: Settings) -> SpecDocument:
    """``doc`` with an unpinned remote artifact pinned to the sha256 of its bytes now.

    The applied Model then names exactly those bytes: its revision id follows, the init
    container verifies them, and new bytes at the URL are a new revision at the next apply.
    """
    from kaip.serving.artifacts import fetch_limits, pin_model

    resource = doc.resource
    if not isinstance(resource, Model):
        return doc
    pinned = pin_model(
        resource, settings.serving.artifact_cache_dir, fetch_limits(settings.serving)
    )
    if pinned is resource:
        return doc
    stderr.print(
        f"Model {resource.metadata.name}: pinned {resource.spec.artifact.uri} at sha256 "
        f"{pinned.spec.artifact.sha256}",
        markup=False,
    )
    return dataclasses.replace(doc, resource=pinned)


def _documents(file: Path) -> Iterator[dict[str, Any]]:
    try:
        docs = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{file}: not readable YAML: {exc}") from None
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ConfigError(f"{file}: every YAML document must be a Kubernetes object")
        if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
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

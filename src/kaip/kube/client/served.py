"""Served names across a namespace: refuse an apply whose Models would take a name in use.

A Model's HTTPRoute carries the names it answers to (the ``kaip.dev/served-names`` annotation,
see :mod:`kaip.render.kube.serving`). Before ``kaip apply`` writes anything,
:func:`check_served_names` lists the kaip HTTPRoutes of each namespace the manifests go to and
refuses, naming both Models, when one of the manifests' Models would serve a name another Model
there already serves (or a name that is another's followed by ``/...``). Routes the manifests
themselves replace do not count. One list request per namespace; never writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kaip.errors import ConfigError
from kaip.kube.client.objects import MANAGED_BY, MANAGED_BY_LABEL, Manifest
from kaip.kube.client.session import Session
from kaip.render.kube import SERVED_NAMES
from kaip.spec import first_clash

_MAX_NAMES = 64  # what one annotation may hold before it is not believed


def served_names(obj: Any) -> list[str]:
    """The names in an HTTPRoute's annotation (none if absent or not a list of strings)."""
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    raw = ((metadata or {}).get("annotations") or {}).get(SERVED_NAMES)
    try:
        names = json.loads(raw) if isinstance(raw, str) and len(raw) < 65536 else None
    except ValueError:
        return []
    if not isinstance(names, list) or len(names) > _MAX_NAMES:
        return []
    return [n for n in names if isinstance(n, str)]


def check_served_names(
    session: Session, manifests: Sequence[Manifest], namespace: str | None = None
) -> None:
    """Raise ConfigError when a Model in ``manifests`` would serve a name already taken."""
    default = namespace or session.namespace
    routes: dict[str, list[tuple[str, list[str]]]] = {}
    for manifest in manifests:
        if manifest.get("kind") != "HTTPRoute" or not served_names(manifest):
            continue
        meta = manifest["metadata"]
        ns = str(meta.get("namespace") or default)
        routes.setdefault(ns, []).append((str(meta["name"]), served_names(manifest)))
    resource = session.resource("gateway.networking.k8s.io/v1", "HTTPRoute") if routes else None
    if resource is None:
        return
    for ns, mine in sorted(routes.items()):
        listed = session.request(
            "GET",
            resource.path(ns),
            query={"labelSelector": f"{MANAGED_BY_LABEL}={MANAGED_BY}"},
            what=f"list HTTPRoutes in {ns} to check served names",
        )
        replaced = {name for name, _ in mine}
        existing = [
            (str(item["metadata"]["name"]), served_names(item))
            for item in (listed or {}).get("items", [])
            if item.get("metadata", {}).get("name") not in replaced
        ]
        clash = first_clash([*existing, *mine])
        if clash is not None:
            model, name, other, taken = clash
            what = "serves it" if name == taken else f"serves {taken!r}, which overlaps it"
            raise ConfigError(
                f"Model {model!r} would serve the name {name!r} in namespace {ns!r}, but Model "
                f"{other!r} there already {what}: give it other serve.names (nothing was applied)"
            )

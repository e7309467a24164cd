"""Backstage catalog entities generated from kaip specs (and, when known, what is running).

The mapping (the project's portal notes, PORTAL.md §D2, after Red Hat's model-catalog-bridge):

* each Model -> a ``Resource`` of type ``ai-model`` (the model itself: artifact URI and format,
  the revision serving it) and a ``Component`` of type ``model-server`` that ``dependsOn`` it
  and ``providesApis`` one ``API`` per protocol it serves: ``NAME-oip-v2`` (type ``openapi``,
  with the OIP v2 inference route as its definition) and ``NAME-openai`` (type ``openai``);
* each App -> a ``Component`` of type ``service``;
* each owner -> a ``Group`` (type ``team``), the ``owner`` of everything above;
* every entity carries ``backstage.io/kubernetes-id: NAME`` (the label kaip puts on what it
  runs), ``kaip.dev/revision`` when the revision is known, and links to the portal's pages.

Pure: takes resources and plain facts, returns plain dicts; never reads files or the network.
Names are kept when Backstage accepts them (kaip names are DNS labels); an owner that is not a
valid entity name is made one (lower case, other characters as ``-``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from kaip.spec import App, Model

API_VERSION = "backstage.io/v1alpha1"
OIP_DEFINITION = """\
openapi: 3.0.3
info: {title: Open Inference Protocol v2, version: "2"}
paths:
  /v2/models/{name}/infer:
    post:
      summary: Run the model on the inputs given
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      requestBody:
        content: {application/json: {schema: {type: object, required: [inputs]}}}
      responses: {"200": {description: the outputs}}
"""
_INVALID = re.compile(r"[^a-z0-9]+")


def group_name(owner: str) -> str:
    """``owner`` as a Backstage entity name (``[a-z0-9]`` runs joined by ``-``)."""
    name = _INVALID.sub("-", owner.lower()).strip("-")[:63].strip("-")
    return name or "unowned"


def _metadata(
    name: str, description: str, revision: str | None, links: list[dict[str, str]], kube_id: str
) -> dict[str, Any]:
    annotations = {"backstage.io/kubernetes-id": kube_id}
    if revision:
        annotations["kaip.dev/revision"] = revision
    return {
        "name": name,
        "description": description,
        "annotations": annotations,
        "tags": ["kaip"],
        "links": links,
    }


def entities(
    resources: Iterable[Model | App],
    *,
    revisions: Mapping[str, str] | None = None,
    portal_url: str = "",
) -> list[dict[str, Any]]:
    """The Backstage entities of ``resources`` (groups first), revisions by resource name."""
    revisions = revisions or {}
    out: list[dict[str, Any]] = []
    groups: dict[str, str] = {}
    for resource in resources:
        name = resource.metadata.name
        owner = resource.spec.owner
        group = group_name(owner)
        groups[group] = owner
        ref = f"group:{group}"
        links = (
            [
                {"url": f"{portal_url}/resources/{name}", "title": "kaip portal"},
                {"url": f"{portal_url}/delivery?resource={name}", "title": "Delivery (DORA)"},
            ]
            if portal_url
            else []
        )
        revision = revisions.get(name)
        if isinstance(resource, App):
            out.append(
                {
                    "apiVersion": API_VERSION,
                    "kind": "Component",
                    "metadata": _metadata(name, f"kaip App {name}", revision, links, name),
                    "spec": {"type": "service", "lifecycle": "production", "owner": ref},
                }
            )
            continue
        artifact = resource.spec.artifact
        model = {
            "apiVersion": API_VERSION,
            "kind": "Resource",
            "metadata": _metadata(
                name, f"{artifact.format} model at {artifact.uri}", revision, links, name
            ),
            "spec": {"type": "ai-model", "owner": ref},
        }
        apis = []
        for protocol in resource.spec.serve.protocols:
            api_name = f"{name}-{protocol}"
            apis.append(f"api:{api_name}")
            api: dict[str, Any] = {
                "apiVersion": API_VERSION,
                "kind": "API",
                "metadata": _metadata(api_name, f"{protocol} API of {name}", revision, links, name),
                "spec": {
                    "type": "openapi" if protocol == "oip-v2" else "openai",
                    "lifecycle": "production",
                    "owner": ref,
                    "definition": OIP_DEFINITION
                    if protocol == "oip-v2"
                    else "OpenAI-compatible /v1/chat/completions and /v1/completions\n",
                },
            }
            out.append(api)
        server = {
            "apiVersion": API_VERSION,
            "kind": "Component",
            "metadata": _metadata(
                f"{name}-server", f"kaip model server of {name}", revision, links, name
            ),
            "spec": {
                "type": "model-server",
                "lifecycle": "production",
                "owner": ref,
                "dependsOn": [f"resource:{name}"],
                "providesApis": apis,
            },
        }
        out += [model, server]
    head = [
        {
            "apiVersion": API_VERSION,
            "kind": "Group",
            "metadata": {"name": group, "description": f"owner {owner!r} in kaip specs"},
            "spec": {"type": "team", "children": []},
        }
        for group, owner in sorted(groups.items())
    ]
    return head + out

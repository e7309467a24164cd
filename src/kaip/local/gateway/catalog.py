"""What the gateway says about the models it routes to, by itself, without asking a replica.

Server metadata (``GET /v2``: name, version and exactly the extensions the gateway serves), the
OpenAI model list and cards (only Models that serve the OpenAI API, one card per served name,
``created`` when the Model was created), which route an OpenAI request's ``model`` names (an
OpenAI-shaped 404 for an unknown name or a Model whose OpenAI API is off, a 501 for KServe's V1
protocol), and Triton's statistics summed over replicas (:mod:`.replica_stats`). Plain functions
of the route table; the only I/O is the replicas' statistics.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from kaip import __version__
from kaip.local.gateway.http1 import error_payload
from kaip.local.gateway.replica_stats import live_revisions, revision_stats
from kaip.local.gateway.routes import CompiledRoute, RouteTable
from kaip.protocol.extensions import SUPPORTED, kserve_v1_message, unsupported_model_action
from kaip.protocol.model_paths import guess_model_name, unknown_model_message
from kaip.protocol.upstream import UpstreamPool

SERVER_NAME = "kaip-gateway"


@dataclass(frozen=True)
class Answer:
    """What the gateway answers by itself: a status and a JSON payload."""

    status: int
    payload: Any


def _get_only(method: bytes) -> Answer | None:
    if method in (b"GET", b"HEAD"):
        return None
    verb = method.decode("latin-1")
    return Answer(405, {"error": f"method {verb} is not allowed here; use GET"})


def server_metadata(table: RouteTable) -> dict[str, Any]:
    extensions = list(SUPPORTED)
    if any(r.route.openai for r in table.models.values()):
        extensions.append("openai")
    return {"name": SERVER_NAME, "version": __version__, "extensions": extensions}


def card(route: CompiledRoute, name: str, first_seen: Mapping[str, float]) -> dict[str, Any]:
    created = route.route.created or first_seen.get(route.name) or time.time()
    return {"id": name, "object": "model", "created": int(created), "owned_by": "kaip"}


def openai_cards(table: RouteTable, first_seen: Mapping[str, float]) -> list[dict[str, Any]]:
    """``/v1/models``: a card per served name of every Model that serves the OpenAI API."""
    cards = [
        card(route, name, first_seen)
        for route in table.models.values()
        if route.route.openai
        for name in route.route.names
    ]
    return sorted(cards, key=lambda c: str(c["id"]))


def _served(table: RouteTable, name: str) -> tuple[CompiledRoute | None, int, Any]:
    route = table.served.get(name)
    if route is None:
        message = f"The model '{name}' does not exist"
        return None, 404, error_payload(message, openai=True, code="model_not_found")
    if not route.route.openai:
        message = (
            f"The model '{name}' does not serve the OpenAI API (Model {route.name!r}: add "
            "'openai' to its serve.protocols)"
        )
        return None, 404, error_payload(message, openai=True, code="model_not_found")
    return route, 200, None


def openai_card(table: RouteTable, first_seen: Mapping[str, float], name: str) -> tuple[int, Any]:
    """``/v1/models/{name}``: the card, or an OpenAI-shaped error."""
    v1 = kserve_v1_message(f"/v1/models/{name}")
    if v1 is not None:
        return 501, error_payload(v1, openai=True, code="not_implemented")
    route, status, error = _served(table, name)
    return (status, error) if route is None else (200, card(route, name, first_seen))


def openai_route(
    table: RouteTable, path: str, body: bytes
) -> tuple[CompiledRoute | None, str | None, int, Any]:
    """``(route, revision to pin or None, 200, None)`` for an OpenAI request, or
    ``(None, None, status, OpenAI error body)``."""
    v1 = kserve_v1_message(path)
    if v1 is not None:
        return None, None, 501, error_payload(v1, openai=True, code="not_implemented")
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        doc = None
    name = doc.get("model") if isinstance(doc, dict) else None
    if not isinstance(name, str) or not name:
        message = "the request body must be a JSON object with a 'model' field"
        return None, None, 400, error_payload(message, openai=True)
    route, status, error = _served(table, name)
    pinned = None if route is None else route.only_revision.get(name)
    return route, pinned, status, error


async def statistics(
    pool: UpstreamPool, asked: Sequence[tuple[CompiledRoute, str, str | None]]
) -> dict[str, Any]:
    """Triton's ``$stats_model_response`` for ``(route, served name, version or None)``."""
    entries: list[dict[str, Any]] = []
    for route, name, version in asked:
        revisions = [version] if version is not None else live_revisions(route)
        entries += await revision_stats(pool, route, name, revisions)
    return {"model_stats": entries}


async def model_request(
    pool: UpstreamPool, table: RouteTable, rest: str, method: bytes
) -> Answer | tuple[CompiledRoute, str | None]:
    """``/v2/models/{rest}``: an answer (unknown model, statistics, an extension kaip lacks), or
    the route to proxy to and the revision to pin (a version asked for, or the only revision
    serving the name)."""
    found = table.find_model(rest)
    if found is None:
        return Answer(404, {"error": unknown_model_message(guess_model_name(rest))})
    route, path = found
    if path.action == "stats":
        if path.version is not None and path.version not in live_revisions(route):
            return Answer(404, {"error": unknown_model_message(path.name, path.version)})
        refused = _get_only(method)
        if refused is not None:
            return refused
        return Answer(200, await statistics(pool, [(route, path.name, path.version)]))
    unsupported = unsupported_model_action(path.action, rest)
    if unsupported is not None:
        return Answer(501, {"error": unsupported})
    return route, path.version or route.only_revision.get(path.name)


async def all_statistics(pool: UpstreamPool, table: RouteTable, method: bytes) -> Answer:
    """``GET /v2/models/stats``: every Model, each under its first served name."""
    refused = _get_only(method)
    if refused is not None:
        return refused
    asked = [(r, r.route.names[0], None) for r in table.models.values()]
    return Answer(200, await statistics(pool, asked))

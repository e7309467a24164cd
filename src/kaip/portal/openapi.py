"""The portal's versioned API described as OpenAPI 3.1: ``GET /api/v1/openapi.json``.

Describes what ``/api/v1/`` answers (the catalog page, the delivery metrics and the rollout
actions), with every parameter's bounds, so clients can be generated and schemathesis can fuzz
it. Errors are
the project's shape, ``{"error": MESSAGE}``, as on the admin API. Pure data; never reads state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaip.portal.catalog import MAX_PER_PAGE, MAX_TEXT
from kaip.portal.delivery import API_VERSION, MAX_DAYS

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _error(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": _ERROR}}}


def _answer(description: str) -> dict[str, Any]:
    error = _error
    return {
        "200": {
            "description": description,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "400": error("a query parameter out of its bounds; the message names it"),
        "401": error("no session and no valid bearer token"),
        "403": error("a page of another origin, or a principal that may not (RBAC on a cluster)"),
        "421": error("a Host the control port does not answer to"),
    }


def _text(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", "maxLength": MAX_TEXT},
    }


def _whole(name: str, most: int, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "integer", "minimum": 1, "maximum": most},
    }


_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "the resource, as the catalog names it",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
}


def portal_openapi(more: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The portal API as OpenAPI 3.1; ``more``: path items served beside it on the same port
    (``kaip up``'s control calls under ``/api/v1``, bearer tokens only), listed with it."""
    document = _document()
    document["paths"].update(more or {})
    return document


def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kaip portal API",
            "version": API_VERSION,
            "description": "What the portal's pages show, as JSON. Send the portal session's "
            "cookie or Authorization: Bearer TOKEN (the run's token or a role token).",
        },
        "paths": {
            "/api/v1/resources": {
                "get": {
                    "summary": "One page of the catalog: Models and Apps by name",
                    "parameters": [
                        _text("q", "part of a name, ignoring case"),
                        _text("owner", "an owner, exactly"),
                        _whole("page", 1_000_000, "the page, from 1"),
                        _whole("per_page", MAX_PER_PAGE, "rows per page (50 by default)"),
                    ],
                    "responses": _answer("items, total, page, pages, per_page, owners"),
                }
            },
            "/api/v1/resources/{name}": {
                "get": {
                    "summary": "One resource: its catalog row, its manifest and its endpoints",
                    "parameters": [_NAME],
                    "responses": {
                        **_answer("the row's fields, manifest, endpoints (what, request)"),
                        "404": _error("no such resource"),
                    },
                }
            },
            "/api/v1/resources/{name}/{action}": {
                "post": {
                    "summary": "Promote, abort or roll back a resource (a bearer token only)",
                    "parameters": [
                        _NAME,
                        {
                            "name": "action",
                            "in": "path",
                            "required": True,
                            "description": "what to do",
                            "schema": {"type": "string", "enum": ["promote", "abort", "undo"]},
                        },
                    ],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "to_revision": {
                                            "type": ["string", "null"],
                                            "minLength": 1,
                                            "maxLength": 64,
                                            "description": "undo's target (default: the "
                                            "revision promoted before the stable one)",
                                        },
                                        "who": {
                                            "type": ["string", "null"],
                                            "minLength": 1,
                                            "maxLength": 200,
                                            "description": "the person acting, for the event "
                                            "log: an admin credential only (403 otherwise)",
                                        },
                                        "full": {
                                            "type": "boolean",
                                            "description": "promote: to 100 % now, skipping "
                                            "the remaining steps",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        **_answer("message: what was done"),
                        "404": _error("no such resource or action"),
                        "409": _error("it cannot be done now (no rollout in progress, ...)"),
                    },
                }
            },
            "/api/v1/dora": {
                "get": {
                    "summary": "The five DORA numbers of a window, with their deployments",
                    "parameters": [
                        _whole("days", MAX_DAYS, "the window's length (30 by default)"),
                        {
                            "name": "until",
                            "in": "query",
                            "required": False,
                            "description": "the window's end, seconds since the epoch",
                            "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e11},
                        },
                        _text("owner", "only this owner's resources"),
                        _text("resource", "only this resource"),
                    ],
                    "responses": _answer("the numbers, their 2024 context and deployments"),
                }
            },
        },
    }

"""The OpenAPI 3 document of the server's Open Inference Protocol v2 routes (``/openapi.json``).

Written out by hand from the protocol, so that fuzzers (schemathesis) and client generators see
exactly the wire format :mod:`kaip.serving.codec` accepts. Pure data.
"""

from __future__ import annotations

from typing import Any

from kaip.serving.codec import DTYPES

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
_PARAMETERS = {"type": "object", "additionalProperties": True}
_TENSOR_IN = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": list(DTYPES)},
        "parameters": _PARAMETERS,
        "data": {"type": "array", "items": {}},
    },
}
_TENSOR_OUT = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string"},
        "parameters": _PARAMETERS,
        "data": {"type": "array", "items": {}},
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": _PARAMETERS,
        "inputs": {"type": "array", "items": _TENSOR_IN, "minItems": 1},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": _PARAMETERS},
            },
        },
    },
}
_INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": _PARAMETERS,
        "outputs": {"type": "array", "items": _TENSOR_OUT},
    },
}
_METADATA = {
    "type": "object",
    "required": ["name", "platform", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": _TENSOR_OUT},
        "outputs": {"type": "array", "items": _TENSOR_OUT},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_DURATION = {
    "type": "object",
    "required": ["count", "ns"],
    "properties": {"count": {"type": "integer"}, "ns": {"type": "integer"}},
}
_MODEL_STAT = {
    "type": "object",
    "required": ["name", "version", "last_inference", "inference_count", "execution_count",
                 "inference_stats", "batch_stats"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "last_inference": {"type": "integer"},
        "inference_count": {"type": "integer"},
        "execution_count": {"type": "integer"},
        "inference_stats": {"type": "object", "additionalProperties": _DURATION},
        "batch_stats": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["batch_size"],
                "properties": {"batch_size": {"type": "integer"}},
                "additionalProperties": _DURATION,
            },
        },
    },
}  # fmt: skip
_STATS = {
    "type": "object",
    "required": ["model_stats"],
    "properties": {"model_stats": {"type": "array", "items": _MODEL_STAT}},
}


def _errors(*codes: int) -> dict[str, Any]:
    words = {400: "client mistake", 404: "unknown model or version", 413: "body too large",
             405: "wrong method", 503: "loading or overloaded (see Retry-After)"}  # fmt: skip
    return {str(c): _json(_ERROR, words[c]) for c in codes}


def document(model: str, revision: str) -> dict[str, Any]:
    """The OpenAPI document for a server serving ``model`` at ``revision``."""
    name = {"name": "model_name", "in": "path", "required": True,
            "schema": {"type": "string", "example": model}}  # fmt: skip
    version = {"name": "model_version", "in": "path", "required": True,
               "schema": {"type": "string", "example": revision}}  # fmt: skip
    ready = {"type": "object", "properties": {"ready": {"type": "boolean"}}}
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": {"responses": {"200": _json(ready, "the process is up")}}},
        "/v2/health/ready": {
            "get": {"responses": {"200": _json(ready, "ready"), "503": _json(ready, "loading")}}
        },
        "/v2": {
            "get": {
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "version": {"type": "string"},
                                "extensions": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                        "server metadata",
                    )
                }
            }
        },
    }
    paths["/v2/models"] = {
        "get": {
            "responses": {
                "200": _json(
                    {"type": "object", "properties": {"models": {"type": "array"}}},
                    "the names this server answers to",
                )
            }
        }
    }
    paths["/v2/models/stats"] = {
        "get": {"responses": {"200": _json(_STATS, "Triton's statistics of every model")}}
    }
    for prefix, params in (
        ("/v2/models/{model_name}", [name]),
        ("/v2/models/{model_name}/versions/{model_version}", [name, version]),
    ):
        paths[prefix] = {
            "get": {
                "parameters": params,
                "responses": {"200": _json(_METADATA, "model metadata"), **_errors(404, 503)},
            }
        }
        paths[f"{prefix}/ready"] = {
            "get": {
                "parameters": params,
                "responses": {"200": _json(ready, "ready"), **_errors(404, 503)},
            }
        }
        paths[f"{prefix}/stats"] = {
            "get": {
                "parameters": params,
                "responses": {"200": _json(_STATS, "Triton's statistics"), **_errors(404)},
            }
        }
        paths[f"{prefix}/infer"] = {
            "post": {
                "parameters": params,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _INFER_REQUEST}},
                },
                "responses": {
                    "200": _json(_INFER_RESPONSE, "inference result"),
                    **_errors(400, 404, 413, 503),
                },
            }
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": f"kaip model server: {model}", "version": revision},
        "paths": paths,
    }

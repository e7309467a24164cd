"""Reading a request target: which route it names and what path goes upstream.

Pure: one function from the raw request target (path and query, as bytes off the wire) to a
:class:`Target`. OpenAI routes name their model in the JSON body, so for them this only says
"look in the body"; the gateway does that. Never does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from urllib.parse import unquote


class TargetKind(Enum):
    MODEL = "model"  # OIP v2 under /v2/models/{name}: the gateway reads ``rest`` by served name
    ALL_STATS = "all_stats"  # GET /v2/models/stats: answered by the gateway
    MODEL_LIST = "model_list"  # GET /v2/models (KServe's list of models): by the gateway
    APP = "app"  # /apps/{name}/...
    OPENAI = "openai"  # /v1/... routed by the body's "model" field
    OPENAI_MODELS = "openai_models"  # GET /v1/models: answered by the gateway
    OPENAI_MODEL = "openai_model"  # GET /v1/models/{name}: answered by the gateway
    HEALTH_LIVE = "health_live"
    HEALTH_READY = "health_ready"
    SERVER_METADATA = "server_metadata"
    ADMIN = "admin"  # /_kaip/...: the controller's admin API
    METRICS = "metrics"  # GET /metrics: the gateway's own Prometheus metrics
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    name: str = ""
    upstream: bytes = b""  # path and query to send to the replica
    rest: str = ""  # MODEL: the decoded path after /v2/models/, without a trailing '/'


_NOT_FOUND = Target(TargetKind.NOT_FOUND)
_METRICS = Target(TargetKind.METRICS)


def parse_target(raw: bytes) -> Target:
    """Classify one request target such as ``b"/v2/models/digits/infer?x=1"``."""
    path, sep, query = raw.partition(b"?")
    if path.startswith(b"/v2"):
        return _parse_v2(raw, path)
    if path.startswith(b"/v1/"):
        if path.rstrip(b"/") == b"/v1/models":
            return Target(TargetKind.OPENAI_MODELS)
        if path.startswith(b"/v1/models/"):
            name = path[len(b"/v1/models/") :].rstrip(b"/")
            if name:  # served names may contain '/'
                return Target(TargetKind.OPENAI_MODEL, name=_text(name))
        return Target(TargetKind.OPENAI, upstream=raw)
    if path.startswith(b"/apps/"):
        rest = path[len(b"/apps/") :]
        name, _, tail = rest.partition(b"/")
        if not name:
            return _NOT_FOUND
        upstream = b"/" + tail
        if sep:
            upstream += b"?" + query
        return Target(TargetKind.APP, name=_text(name), upstream=upstream)
    if path.startswith(b"/_kaip/") or path == b"/_kaip":
        return Target(TargetKind.ADMIN, upstream=raw)
    if path == b"/metrics":
        return _METRICS
    return _NOT_FOUND


def _parse_v2(raw: bytes, path: bytes) -> Target:
    parts = path.split(b"/")  # ["", "v2", ...]
    if len(parts) == 2 or (len(parts) == 3 and parts[2] == b""):
        return Target(TargetKind.SERVER_METADATA)
    if parts[2] == b"health" and len(parts) == 4:
        if parts[3] == b"live":
            return Target(TargetKind.HEALTH_LIVE)
        if parts[3] == b"ready":
            return Target(TargetKind.HEALTH_READY)
        return _NOT_FOUND
    if parts[2] == b"models" and (len(parts) == 3 or (len(parts) == 4 and not parts[3])):
        return Target(TargetKind.MODEL_LIST)
    if parts[2] != b"models" or len(parts) < 4 or not parts[3]:
        return _NOT_FOUND
    rest = _text(path[len(b"/v2/models/") :].rstrip(b"/"))
    if rest == "stats":
        return Target(TargetKind.ALL_STATS)
    return Target(TargetKind.MODEL, upstream=raw, rest=rest)


def _text(segment: bytes) -> str:
    text = segment.decode("latin-1")
    return unquote(text) if "%" in text else text

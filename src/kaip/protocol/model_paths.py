"""Reading ``/v2/models/...`` paths whose model names may contain ``/``.

A served name such as ``meta-llama/Llama-3.1-8B-Instruct`` spans several path segments, so a
path is read against the names being served: the served name is the prefix of whole segments
that is one of them. No served name is a whole-segment prefix of another (the spec refuses ``a``
beside ``a/b``), so at most one prefix can match and the first segment alone, the common case, is
tried first. What follows the name is an optional ``versions/{v}`` and the action (``infer``,
``ready``, ``stats``, ...; empty for metadata). Clients may also percent-encode the ``/`` of a
name (``meta-llama%2FLlama-3.1-8B-Instruct``): paths are read decoded. Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MAX_NAME_SEGMENTS = 128  # a served name has at most 256 characters, so at most 128 segments
ACTIONS = frozenset(
    {"infer", "ready", "stats", "config", "generate", "generate_stream", "trace", "setting"}
)


@dataclass(frozen=True, slots=True)
class ModelPath:
    name: str
    version: str | None
    action: str
    """What follows the name and version, e.g. ``infer``; empty for the model's metadata."""


def split_model_path(rest: str, is_served: Callable[[str], bool]) -> ModelPath | None:
    """Read ``rest``, the decoded path after ``/v2/models/``; None if it names no served model."""
    segments = rest.split("/")
    for end in range(1, min(len(segments), MAX_NAME_SEGMENTS) + 1):
        name = "/".join(segments[:end])
        if is_served(name):
            tail = segments[end:]
            version = None
            if len(tail) >= 2 and tail[0] == "versions":
                version, tail = tail[1], tail[2:]
            return ModelPath(name, version, "/".join(tail))
    return None


def guess_model_name(rest: str) -> str:
    """The name a path for an unknown model most likely meant, for its error message."""
    segments = rest.split("/")
    for index in range(1, len(segments)):
        segment = segments[index]
        if (segment == "versions" and index + 1 < len(segments)) or (
            segment in ACTIONS and index == len(segments) - 1
        ):
            return "/".join(segments[:index])
    return rest


def unknown_model_message(name: str, version: str | None = None) -> str:
    """Triton's words for a model it does not serve; Triton's own clients test for them."""
    if version is not None:
        return f"Request for unknown model: '{name}' version {version} is not found"
    return f"Request for unknown model: '{name}' is not found"

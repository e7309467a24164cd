"""Which OpenAI request fields kaip honours, and the 400 naming any other one that is set.

The OpenAI API has more request fields than a text engine behind kaip implements. A field that
kaip does not implement is never ignored in silence: set to anything but its neutral value (the
value that asks for nothing, e.g. ``logprobs: false``, ``n: 1``, ``tools: []``) it is refused with
a 400 whose OpenAI error body names it in ``param`` (``code: unsupported_parameter``), as
OpenAI's own API does for arguments it does not know. A field the API does not define at all is
refused the same way (``code: unknown_parameter``).

Never reads the body's values for generation (:mod:`kaip.serving.openai_api` does) and never does
I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from kaip.errors import InferenceError

# Fields kaip implements (openai_api reads them) or that ask nothing of the engine: ``user``,
# ``metadata``, ``prompt_cache_key`` and ``safety_identifier`` are labels for the caller's
# bookkeeping, ``parallel_tool_calls`` only matters with tools (refused below).
_COMMON: Final = frozenset(
    {"model", "max_tokens", "temperature", "top_p", "stop", "seed", "stream", "stream_options",
     "user", "n", "metadata", "prompt_cache_key", "safety_identifier", "parallel_tool_calls"}
)  # fmt: skip
HONOURED: Final[Mapping[str, frozenset[str]]] = {
    "chat": _COMMON | {"messages", "max_completion_tokens"},
    "completion": _COMMON | {"prompt"},
}


def _neutral_penalty(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 0


# Fields of the OpenAI API that kaip does not implement, with the test of their neutral value.
UNSUPPORTED: Final[Mapping[str, Mapping[str, Any]]] = {
    "chat": {
        "tools": lambda v: v == [],
        "tool_choice": lambda v: v == "none",
        "functions": lambda v: v == [],
        "function_call": lambda v: v == "none",
        "response_format": lambda v: v == {"type": "text"},
        "logprobs": lambda v: v is False,
        "top_logprobs": lambda v: v == 0,
        "logit_bias": lambda v: v == {},
        "frequency_penalty": _neutral_penalty,
        "presence_penalty": _neutral_penalty,
        "audio": lambda v: False,
        "modalities": lambda v: v == ["text"],
        "prediction": lambda v: False,
        "reasoning_effort": lambda v: False,
        "verbosity": lambda v: False,
        "web_search_options": lambda v: False,
        "service_tier": lambda v: v in ("auto", "default"),
        "store": lambda v: v is False,
    },
    "completion": {
        "logprobs": lambda v: v == 0,
        "echo": lambda v: v is False,
        "best_of": lambda v: v == 1,
        "suffix": lambda v: v == "",
        "logit_bias": lambda v: v == {},
        "frequency_penalty": _neutral_penalty,
        "presence_penalty": _neutral_penalty,
    },
}

_WHY: Final[Mapping[str, str]] = {
    "tools": "this model's engine does not call tools through kaip",
    "tool_choice": "this model's engine does not call tools through kaip",
    "functions": "this model's engine does not call functions through kaip",
    "function_call": "this model's engine does not call functions through kaip",
    "response_format": "structured output (JSON mode, JSON schema) is not implemented",
    "logprobs": "log probabilities are not returned",
    "top_logprobs": "log probabilities are not returned",
}


class UnsupportedParameter(InferenceError):
    """A 400 naming the request field (``param``) that cannot be honoured."""

    def __init__(self, param: str, message: str, code: str = "unsupported_parameter") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def check(body: Mapping[str, Any], *, chat: bool) -> None:
    """Refuse the first field of ``body`` that kaip would otherwise have to ignore."""
    kind = "chat" if chat else "completion"
    refuse_unhonoured(body, HONOURED[kind], UNSUPPORTED[kind], _WHY)


def refuse_unhonoured(
    body: Mapping[str, Any],
    honoured: frozenset[str],
    unsupported: Mapping[str, Any],
    why: Mapping[str, str],
) -> None:
    """Refuse the first field of ``body`` that is neither ``honoured`` nor one of
    ``unsupported`` at its neutral value (a 400 naming it, with ``why`` when known)."""
    for name, value in body.items():
        if name in honoured or value is None:
            continue
        neutral = unsupported.get(name)
        if neutral is None:
            raise UnsupportedParameter(
                name,
                f"Unrecognized request argument supplied: {name!r}; remove it",
                "unknown_parameter",
            )
        if not _is_neutral(neutral, value):
            reason = why.get(name, "kaip does not implement it")
            raise UnsupportedParameter(
                name, f"'{name}' is not supported: {reason}; remove it from the request"
            )


def _is_neutral(test: Any, value: Any) -> bool:
    try:
        return bool(test(value))
    except Exception:  # a value of a strange type is not neutral
        return False

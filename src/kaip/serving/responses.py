"""OpenAI's Responses API (``POST /v1/responses``) over kaip's text generation, text only.

A request's ``input`` (a string, or a list of messages whose ``content`` is a string or
``input_text`` parts) and ``instructions`` (a system message before them) become one chat
prompt; ``max_output_tokens``, ``temperature`` and ``top_p`` the generation's parameters. The
answer is a ``response`` object with one assistant ``message`` holding one ``output_text``
(``status: incomplete`` with ``incomplete_details.reason: max_output_tokens`` when it was cut),
and ``usage`` in the engine's token counts. ``stream: true`` sends the Responses events
(``response.created``, ``response.output_item.added``, ``response.content_part.added``, one
``response.output_text.delta`` per piece, then the ``.done`` events and ``response.completed``)
as Server-Sent Events with sequence numbers. Kaip keeps no state, so a field that needs it
(``previous_response_id``, ``store: true``, ``background``) or that kaip does not implement
(tools, structured output, reasoning, ...) is a 400 naming it, as on the other routes. How a
generation runs and ends is :mod:`kaip.serving.generation`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final

import orjson

from kaip.errors import InferenceError
from kaip.serving.asgi import Send, respond
from kaip.serving.generation import SSE_HEADERS, Generation, error_document
from kaip.serving.openai_fields import UnsupportedParameter, refuse_unhonoured

HONOURED: Final = frozenset(
    {"model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "stream",
     "user", "metadata", "prompt_cache_key", "safety_identifier", "parallel_tool_calls",
     "truncation"}
)  # fmt: skip
NEUTRAL: Final[Mapping[str, Any]] = {
    "tools": lambda v: v == [],
    "tool_choice": lambda v: v == "none",
    "text": lambda v: v == {"format": {"type": "text"}},
    "reasoning": lambda v: v == {},
    "store": lambda v: v is False,
    "previous_response_id": lambda v: False,
    "conversation": lambda v: False,
    "background": lambda v: v is False,
    "include": lambda v: v == [],
    "top_logprobs": lambda v: v == 0,
    "service_tier": lambda v: v in ("auto", "default"),
    "max_tool_calls": lambda v: False,
    "prompt": lambda v: False,
    "stream_options": lambda v: v == {},
}
WHY: Final[Mapping[str, str]] = {
    "store": "kaip keeps no responses: send store: false (or leave it out)",
    "previous_response_id": "kaip keeps no responses: send the whole conversation as input",
    "conversation": "kaip keeps no conversations: send the whole conversation as input",
    "background": "responses are answered while the request is open",
    "tools": "this model's engine does not call tools through kaip",
    "tool_choice": "this model's engine does not call tools through kaip",
    "text": "structured output (JSON schema) is not implemented",
    "reasoning": "reasoning options are not implemented",
}


def check(body: Mapping[str, Any]) -> None:
    """Refuse the first field kaip would otherwise have to ignore (400 naming it)."""
    refuse_unhonoured(body, HONOURED, NEUTRAL, WHY)
    if body.get("truncation") not in (None, "disabled"):
        raise UnsupportedParameter("truncation", "'truncation' must be 'disabled'")


def messages_of(body: Mapping[str, Any]) -> list[dict[str, str]]:
    """The chat messages of a request: ``instructions`` as a system message, then ``input``."""
    out: list[dict[str, str]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InferenceError("'instructions' must be a string")
        out.append({"role": "system", "content": instructions})
    raw = body.get("input")
    if isinstance(raw, str):
        return [*out, {"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise InferenceError("'input' must be a string or a non-empty list of messages")
    for item in raw:
        if not isinstance(item, dict) or item.get("type", "message") != "message":
            raise UnsupportedParameter("input", "'input' items must be messages (text only)")
        role, content = item.get("role"), item.get("content")
        if role not in ("user", "assistant", "system", "developer"):
            raise InferenceError("each input message needs a role: user, assistant or system")
        out.append(
            {"role": "system" if role == "developer" else str(role), "content": _text(content)}
        )
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text"):
                raise UnsupportedParameter("input", "message content must be text parts only")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise InferenceError("message 'content' must be a string or a list of text parts")


class ResponseWriter:
    """One generation answered as a Responses API ``response`` (whole or streamed)."""

    def __init__(self, run: Generation, body: Mapping[str, Any]) -> None:
        self.run = run
        self.id = "resp_" + uuid.uuid4().hex
        self.message_id = "msg_" + uuid.uuid4().hex
        self.created = int(time.time())
        self.body = body
        self._sequence = 0

    def _response(self, status: str, text: str | None) -> dict[str, Any]:
        cut = self.run.finish_reason == "length"
        output = []
        if text is not None:
            output.append(self._message(text, "incomplete" if cut else "completed"))
        usage = None
        if status != "in_progress":
            counted = self.run.usage()
            usage = {
                "input_tokens": counted["prompt_tokens"],
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": counted["completion_tokens"],
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": counted["total_tokens"],
            }
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "model": self.run.served_name,
            "output": output,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete"
            else None,
            "instructions": self.body.get("instructions"),
            "max_output_tokens": self.body.get("max_output_tokens"),
            "temperature": self.run.params.temperature,
            "top_p": self.run.params.top_p,
            "parallel_tool_calls": False,
            "tool_choice": "none",
            "tools": [],
            "text": {"format": {"type": "text"}},
            "truncation": "disabled",
            "store": False,
            "metadata": self.body.get("metadata") or {},
            "error": None,
            "usage": usage,
        }

    def _message(self, text: str, status: str) -> dict[str, Any]:
        return {
            "type": "message",
            "id": self.message_id,
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }

    def _final_status(self) -> str:
        return "incomplete" if self.run.finish_reason == "length" else "completed"

    async def whole(self, send: Send) -> None:
        text = await self.run.text()
        await respond(send, 200, orjson.dumps(self._response(self._final_status(), text)))

    async def _event(self, send: Send, kind: str, fields: Mapping[str, Any]) -> None:
        doc = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        data = b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(doc) + b"\n\n"
        await send({"type": "http.response.body", "body": data, "more_body": True})

    async def stream(self, send: Send) -> None:
        run = self.run
        stream = run.start()
        error = ""
        text = ""
        part = {"type": "output_text", "text": "", "annotations": []}
        where = {"item_id": self.message_id, "output_index": 0, "content_index": 0}
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await self._event(
                send, "response.created", {"response": self._response("in_progress", None)}
            )
            await self._event(
                send, "response.in_progress", {"response": self._response("in_progress", None)}
            )
            item = {**self._message("", "in_progress"), "content": []}
            await self._event(send, "response.output_item.added", {"output_index": 0, "item": item})
            await self._event(send, "response.content_part.added", {**where, "part": part})
            async with asyncio.timeout(run.timeout), contextlib.aclosing(run.pieces(stream)) as it:
                async for piece in it:
                    if piece:
                        text += piece
                        await self._event(
                            send,
                            "response.output_text.delta",
                            {**where, "delta": piece, "logprobs": []},
                        )
            await self._event(
                send, "response.output_text.done", {**where, "text": text, "logprobs": []}
            )
            await self._event(
                send, "response.content_part.done", {**where, "part": {**part, "text": text}}
            )
            status = self._final_status()
            done_item = self._message(text, "incomplete" if status == "incomplete" else "completed")
            await self._event(
                send, "response.output_item.done", {"output_index": 0, "item": done_item}
            )
            final = "response.incomplete" if status == "incomplete" else "response.completed"
            await self._event(send, final, {"response": self._response(status, text)})
        except TimeoutError as exc:
            error = type(exc).__name__
            await self._failed(send, run.timed_out_message())
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        except Exception as exc:
            error = type(exc).__name__
            await self._failed(send, "generation failed")
        finally:
            stream.cancel()
            run.record(error)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _failed(self, send: Send, message: str) -> None:
        failed = {
            **self._response("failed", None),
            "error": {"code": "server_error", "message": message},
        }
        await self._event(send, "response.failed", {"response": failed})


__all__ = ["ResponseWriter", "check", "error_document", "messages_of"]

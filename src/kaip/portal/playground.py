"""The portal's playground: a real inference request to a Model, generated from its metadata.

The form is made from what the model itself says (``GET /v2/models/NAME`` through the gateway:
each input's name, datatype and shape), pre-filled with an Open Inference Protocol v2 request
of zeros in that shape (a variable dimension, -1, becomes 1). Sending it posts the JSON the
form holds to the gateway's ``/v2/models/NAME/infer``, as any client would, and the page shows
the answer, its status and how long the gateway took to answer (measured here, round trip on
loopback). A Model that speaks OpenAI gets a chat box beside (or instead of) that form: one
user message, sent as a ``/v1/chat/completions`` request under the served name, the reply's
text shown with its status and round trip. The request is bounded by the portal's form size;
the metadata read waits at most :data:`METADATA_TIMEOUT_S`, a request :data:`INFER_TIMEOUT_S`.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any
from urllib.parse import quote

import httpx

from kaip.portal.pages import _e
from kaip.portal.source import Playground

METADATA_TIMEOUT_S = 2.0
INFER_TIMEOUT_S = 30.0
MAX_SHOWN = 20_000
"""The most characters of an answer the page shows."""


def _client(target: Playground, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=timeout, trust_env=False, **target.client)


async def metadata(target: Playground) -> dict[str, Any] | None:
    """The model's OIP v2 metadata, or None when it does not answer."""
    served = quote(target.served, safe="")
    try:
        async with _client(target, METADATA_TIMEOUT_S) as client:
            answer = await client.get(f"{target.base_url}/v2/models/{served}")
        if answer.status_code != 200:
            return None
        data = answer.json()
        return data if isinstance(data, dict) else None
    except (httpx.HTTPError, ValueError):
        return None


def template(meta: dict[str, Any] | None) -> str:
    """An OIP v2 request of zeros shaped as the metadata's inputs (empty object: no metadata)."""
    inputs = []
    for spec in (meta or {}).get("inputs", []) or []:
        if not isinstance(spec, dict):
            continue
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.get("shape", [1])]
        size = math.prod(shape)
        if size > 4096:
            continue
        datatype = str(spec.get("datatype", "FP32"))
        zero: Any = "" if datatype == "BYTES" else 0
        inputs.append(
            {
                "name": spec.get("name", "input-0"),
                "shape": shape,
                "datatype": datatype,
                "data": [zero] * size,
            }
        )
    return json.dumps({"inputs": inputs}) if inputs else "{}"


async def send(target: Playground, body: str) -> tuple[int, str, float]:
    """POST ``body`` to the model's infer route: (status, answer text, milliseconds)."""
    started = time.perf_counter()
    try:
        async with _client(target, INFER_TIMEOUT_S) as client:
            answer = await client.post(
                f"{target.base_url}/v2/models/{quote(target.served, safe='')}/infer",
                content=body.encode(),
                headers={"content-type": "application/json"},
            )
        took = (time.perf_counter() - started) * 1000
        return answer.status_code, answer.text, took
    except httpx.HTTPError as exc:
        took = (time.perf_counter() - started) * 1000
        return 0, f"the model did not answer: {exc!r}", took


async def chat(target: Playground, message: str) -> tuple[int, str, float]:
    """One user ``message`` to the model's OpenAI chat route: (status, the reply's text or the
    error's, milliseconds)."""
    request = {"model": target.served, "messages": [{"role": "user", "content": message}]}
    started = time.perf_counter()
    try:
        async with _client(target, INFER_TIMEOUT_S) as client:
            answer = await client.post(f"{target.base_url}/v1/chat/completions", json=request)
        took = (time.perf_counter() - started) * 1000
    except httpx.HTTPError as exc:
        took = (time.perf_counter() - started) * 1000
        return 0, f"the model did not answer: {exc!r}", took
    try:
        data = answer.json()
        if answer.status_code == 200:
            return 200, str(data["choices"][0]["message"]["content"]), took
        return answer.status_code, str(data["error"]["message"]), took
    except (ValueError, LookupError, TypeError):
        return answer.status_code, answer.text, took


def playground_section(
    name: str,
    target: Playground,
    body: str,
    csrf: str | None,
    result: tuple[int, str, float] | None = None,
    said: tuple[str, tuple[int, str, float]] | None = None,
) -> str:
    """The playground of ``target``'s protocols: an OIP v2 form (the request as JSON, the last
    answer) and an OpenAI chat box (the last message and its reply), for a session."""
    served = target.served
    if csrf is None:
        return (
            "<p>Log in with the form to use the playground (it sends real requests to "
            f"<code>{_e(served)}</code>).</p>"
        )
    parts = []
    if "oip-v2" in target.protocols:
        parts.append(_oip_form(name, served, body, csrf, result))
    if "openai" in target.protocols:
        parts.append(_chat_form(name, served, csrf, said))
    return "".join(parts)


def _chat_form(
    name: str, served: str, csrf: str, said: tuple[str, tuple[int, str, float]] | None
) -> str:
    reply = ""
    message = ""
    if said is not None:
        message, (status, text, took) = said
        shown = text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + " …"
        reply = (
            f'<p>Reply <strong id="chat-status">{status}</strong> in '
            f'<strong id="chat-ms">{took:.1f} ms</strong>:</p>'
            f'<pre id="chat-output">{_e(shown)}</pre>'
        )
    action = f"/resources/{quote(name, safe='')}/playground"
    return (
        f'<form method="post" action="{_e(action)}" id="chat">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        f'<p><label for="chat-message">Chat with <code>{_e(served)}</code> '
        "(OpenAI <code>/v1/chat/completions</code>, one user message)</label></p>"
        f'<textarea id="chat-message" name="message" rows="3" cols="100" maxlength="1500" '
        f"required>{_e(message)}</textarea>"
        '<p><button type="submit">Send</button></p></form>'
        f"{reply}"
    )


def _oip_form(
    name: str, served: str, body: str, csrf: str, result: tuple[int, str, float] | None
) -> str:
    answer = ""
    if result is not None:
        status, text, took = result
        shown = text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + " …"
        answer = (
            f'<p>Answer <strong id="playground-status">{status}</strong> in '
            f'<strong id="playground-ms">{took:.1f} ms</strong>:</p>'
            f'<pre id="playground-output">{_e(shown)}</pre>'
        )
    action = f"/resources/{quote(name, safe='')}/playground"
    return (
        f'<form method="post" action="{_e(action)}" id="playground">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        f'<p><label for="playground-body">Request to <code>/v2/models/{_e(served)}/infer'
        "</code> (Open Inference Protocol v2, from the model's metadata)</label></p>"
        f'<textarea id="playground-body" name="body" rows="6" cols="100" maxlength="1500">'
        f"{_e(body)}</textarea>"
        '<p><button type="submit">Send</button></p></form>'
        f"{answer}"
    )

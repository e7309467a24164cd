"""The portal's playground: a real inference request to a Model, generated from its metadata.

The form is made from what the model itself says (``GET /v2/models/NAME`` through the gateway:
each input's name, datatype and shape), pre-filled with an Open Inference Protocol v2 request
of zeros in that shape (a variable dimension, -1, becomes 1). Sending it posts the JSON the
form holds to the gateway's ``/v2/models/NAME/infer``, as any client would, and the page shows
the answer, its status and how long the gateway took to answer (measured here, round trip on
loopback). The request is bounded by the portal's form size; the metadata read waits at most
:data:`METADATA_TIMEOUT_S`, the request :data:`INFER_TIMEOUT_S`. Only for Models served over
OIP v2 (a chat box for OpenAI-protocol models is not built yet).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any
from urllib.parse import quote

import httpx

from kaip.portal.pages import _e

METADATA_TIMEOUT_S = 2.0
INFER_TIMEOUT_S = 30.0
MAX_SHOWN = 20_000
"""The most characters of an answer the page shows."""


async def metadata(gateway_url: str, served: str) -> dict[str, Any] | None:
    """The model's OIP v2 metadata through the gateway, or None when it does not answer."""
    try:
        async with httpx.AsyncClient(timeout=METADATA_TIMEOUT_S, trust_env=False) as client:
            answer = await client.get(f"{gateway_url}/v2/models/{quote(served, safe='')}")
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


async def send(gateway_url: str, served: str, body: str) -> tuple[int, str, float]:
    """POST ``body`` to the model's infer route: (status, answer text, milliseconds)."""
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=INFER_TIMEOUT_S, trust_env=False) as client:
            answer = await client.post(
                f"{gateway_url}/v2/models/{quote(served, safe='')}/infer",
                content=body.encode(),
                headers={"content-type": "application/json"},
            )
        took = (time.perf_counter() - started) * 1000
        return answer.status_code, answer.text, took
    except httpx.HTTPError as exc:
        took = (time.perf_counter() - started) * 1000
        return 0, f"the gateway did not answer: {exc!r}", took


def playground_section(
    name: str,
    served: str,
    body: str,
    csrf: str | None,
    result: tuple[int, str, float] | None = None,
) -> str:
    """The playground: the request as JSON, a Send button (for a session), the last answer."""
    if csrf is None:
        return (
            "<p>Log in with the form to use the playground (it sends a real request to "
            f"<code>/v2/models/{_e(served)}/infer</code>).</p>"
        )
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

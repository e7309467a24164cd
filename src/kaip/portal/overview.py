"""A resource page's overview: its spec as YAML, where it answers, and how to call it.

Pure, from an :class:`~kaip.portal.source.Overview` a source gives: the manifest as declared
(shown as YAML), the endpoints its protocols open, and snippets a user can paste whole — curl,
Python (``httpx``) and, for a Model that speaks OpenAI, the OpenAI SDK. Every value that goes
into a snippet is quoted for its language (:func:`shlex.quote` for the shell, :func:`repr` for
Python), and the page escapes it once more as HTML, so a name cannot break out of either. The
OIP v2 body is the playground's (zeros shaped as the model's metadata) when the source could
read the metadata, else a placeholder that says so. Never does I/O, never decides anything.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import yaml

from kaip.portal.pages import _e
from kaip.portal.source import Overview

PLACEHOLDER = {
    "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]
}
"""The OIP v2 body of a snippet when the model's metadata is not known: shape it as it says."""
CHAT = [{"role": "user", "content": "Say hello."}]


@dataclass(frozen=True)
class Snippet:
    label: str
    language: str
    code: str


def endpoints(overview: Overview) -> list[tuple[str, str]]:
    """(what, method and URL) for each way in."""
    if overview.kind != "Model":
        return [("the App", f"GET {overview.base_url}")]
    out: list[tuple[str, str]] = []
    for served in overview.served:
        path = quote(served, safe="")
        if "oip-v2" in overview.protocols:
            out.append(("OIP v2 inference", f"POST {overview.base_url}/v2/models/{path}/infer"))
            out.append(("OIP v2 metadata", f"GET {overview.base_url}/v2/models/{path}"))
    if "openai" in overview.protocols:
        out.append(("OpenAI chat", f"POST {overview.base_url}/v1/chat/completions"))
        out.append(("OpenAI models", f"GET {overview.base_url}/v1/models"))
    return out


def snippets(overview: Overview, body: str | None) -> list[Snippet]:
    """Programs that call the resource, each complete; ``body`` is an OIP v2 request's JSON."""
    if overview.kind != "Model":
        return [Snippet("curl", "shell", f"curl -sS {shlex.quote(overview.base_url)}")]
    if not overview.served:
        return []
    served = overview.served[0]
    out: list[Snippet] = []
    if "oip-v2" in overview.protocols:
        request = _request(body)
        url = f"{overview.base_url}/v2/models/{quote(served, safe='')}/infer"
        text = json.dumps(request, separators=(",", ":"))
        out.append(
            Snippet(
                "curl",
                "shell",
                f"curl -sS -X POST {shlex.quote(url)} \\\n"
                f"  -H 'content-type: application/json' \\\n  -d {shlex.quote(text)}",
            )
        )
        out.append(
            Snippet(
                "Python (httpx)",
                "python",
                "import httpx\n\n"
                f"request = {request!r}\n"
                f"answer = httpx.post({url!r}, json=request, timeout=30)\n"
                "answer.raise_for_status()\n"
                'print(answer.json()["outputs"])\n',
            )
        )
    if "openai" in overview.protocols:
        chat = {"model": served, "messages": CHAT}
        url = f"{overview.base_url}/v1/chat/completions"
        out.append(
            Snippet(
                "curl (OpenAI)",
                "shell",
                f"curl -sS -X POST {shlex.quote(url)} \\\n"
                f"  -H 'content-type: application/json' \\\n"
                f"  -d {shlex.quote(json.dumps(chat, separators=(',', ':')))}",
            )
        )
        out.append(
            Snippet(
                "OpenAI SDK",
                "python",
                "from openai import OpenAI\n\n"
                f'client = OpenAI(base_url={overview.base_url + "/v1"!r}, api_key="unused")\n'
                f"reply = client.chat.completions.create(model={served!r}, messages={CHAT!r})\n"
                "print(reply.choices[0].message.content)\n",
            )
        )
    return out


def _request(body: str | None) -> Any:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, Mapping) and parsed.get("inputs"):
        return parsed
    return PLACEHOLDER


def manifest_yaml(overview: Overview) -> str:
    return yaml.safe_dump(dict(overview.manifest), sort_keys=False, default_flow_style=False)


def overview_section(overview: Overview, body: str | None) -> str:
    """The overview's HTML: endpoints, snippets (each in a ``<pre>`` with ``data-snippet``),
    and the spec as YAML (``<pre id="spec-yaml">``)."""
    ways = "".join(
        f"<li>{_e(what)}: <code>{_e(where)}</code></li>" for what, where in endpoints(overview)
    )
    note = f'<p class="muted">{_e(overview.note)}</p>' if overview.note else ""
    shown = _request(body) is not PLACEHOLDER
    guess = (
        ""
        if shown or "oip-v2" not in overview.protocols
        else '<p class="muted">The model did not say its inputs: shape the request as '
        "its metadata (<code>GET …/v2/models/NAME</code>) says.</p>"
    )
    code = "".join(
        f"<h3>{_e(s.label)}</h3>"
        f'<pre data-snippet="{_e(s.label)}" data-language="{_e(s.language)}">{_e(s.code)}</pre>'
        for s in snippets(overview, body)
    )
    return (
        f"<h2>Endpoints</h2><ul>{ways}</ul>{note}"
        f"<h2>Use it</h2>{guess}{code}"
        "<details><summary>Spec as YAML (as running: defaults filled in, artifact pinned)</summary>"
        f'<pre id="spec-yaml">{_e(manifest_yaml(overview))}</pre></details>'
    )

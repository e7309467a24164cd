"""The portal's pages as HTML: the catalog, one resource with its rollout history, the login form.

Pure rendering from plain data (the rows of a :class:`~kaip.portal.source.PortalSource`): every
value from a spec, the state or a request is escaped with :func:`html.escape`, and the pages
carry no script at all (the portal's Content-Security-Policy allows none). Never reads state and
never decides anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:.6em 1.2em;display:flex;gap:1em;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}header form{margin-left:auto}
main{padding:1em 1.2em}table{border-collapse:collapse;background:#fff;width:100%}
th,td{border:1px solid #d0d7de;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#eaeef2}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37}.bad{color:#cf222e}.muted{color:#57606a}
.login{max-width:28em;margin:3em auto;background:#fff;padding:1.5em;border:1px solid #d0d7de}
input[type=password]{width:100%;box-sizing:border-box;padding:.4em}.error{color:#cf222e}
pre{white-space:pre-wrap;overflow-wrap:anywhere}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def page(title: str, body: str, *, csrf: str | None = None, head: str = "") -> str:
    """A whole page; with ``csrf`` (a session's), the header has a log-out button; ``head`` is
    added to ``<head>`` (a live page's scripts)."""
    logout = (
        '<form method="post" action="/logout">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        '<button type="submit">Log out</button></form>'
        if csrf is not None
        else ""
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · kaip</title><style>{STYLE}</style>{head}</head><body>"
        '<header><a href="/">kaip portal</a><a href="/delivery">Delivery</a>'
        f"{logout}</header><main>{body}</main></body></html>"
    )


def login_page(*, hint: str, error: str | None = None) -> str:
    """The login form; ``hint`` says where a token comes from (as text)."""
    problem = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    body = (
        '<div class="login"><h1>Log in</h1>'
        f"<p>{_e(hint)}</p>{problem}"
        '<form method="post" action="/login"><label for="token">Token</label>'
        '<input id="token" name="token" type="password" autocomplete="off" required>'
        '<p><button type="submit">Log in</button></p></form></div>'
    )
    return page("Log in", body)


def _num(value: float | None, fmt: str, unit: str = "") -> str:
    return "—" if value is None else f"{value:{fmt}}{unit}"


def _count(value: float | None) -> str:
    return "—" if value is None else str(int(value))


def _weights(weights: Mapping[str, int]) -> str:
    return ", ".join(f"rev {_e(rev)}: {int(w)} %" for rev, w in weights.items())


def _health(row: Mapping[str, Any]) -> str:
    if row.get("state"):  # a TrainingJob: its latest run's state
        css = "ok" if row["ready"] else "muted"
        return f'<span class="{css}">{_e(row["state"])}</span>'
    if row["ready"]:
        return '<span class="ok">ready</span>'
    return '<span class="bad">not ready</span>'


def _phases(replicas: Sequence[Mapping[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for replica in replicas:
        counts[replica["phase"]] = counts.get(replica["phase"], 0) + 1
    return ", ".join(f"{n} {_e(p)}" for p, n in sorted(counts.items())) or "none"


def _catalog_form(data: Mapping[str, Any]) -> str:
    options = "".join(
        f'<option value="{_e(o)}"{" selected" if o == data["owner"] else ""}>{_e(o)}</option>'
        for o in data["owners"]
    )
    return (
        '<form method="get" action="/" class="filters" role="search">'
        f'<label>Name <input name="q" type="search" value="{_e(data["q"])}" maxlength="253">'
        f'</label> <label>Owner <select name="owner"><option value="">every owner</option>'
        f'{options}</select></label> <button type="submit">Search</button></form>'
    )


def _pager(data: Mapping[str, Any]) -> str:
    page, pages, per_page, total = data["page"], data["pages"], data["per_page"], data["total"]

    def link(number: int, label: str) -> str:
        query = urlencode(
            {"q": data["q"], "owner": data["owner"], "page": number, "per_page": per_page}
        )
        return f'<a href="/?{_e(query)}" rel="{label.lower()}">{label}</a>'

    first = min(total, (page - 1) * per_page + 1)
    last = min(total, page * per_page)
    parts = [f"{first} to {last} of {total} · page {page} of {pages}"]
    if page > 1:
        parts.append(link(min(page - 1, pages), "Previous"))
    if page < pages:
        parts.append(link(page + 1, "Next"))
    return f'<nav class="pager" aria-label="pages">{" · ".join(parts)}</nav>'


def catalog_page(data: Mapping[str, Any], *, csrf: str | None, note: str = "") -> str:
    """One page of Models and Apps: kind, owner, revisions and weights, health, traffic."""
    head = (
        "<tr><th>Name</th><th>Kind</th><th>Owner</th><th>Revisions (weights)</th>"
        "<th>Health</th><th>Replicas</th><th>Requests</th><th>req/s</th><th>p99</th>"
        "<th>Errors</th><th>Cost / 1k req</th><th>Energy / req</th></tr>"
    )
    lines = []
    for row in data["items"]:
        traffic = row.get("traffic") or {}
        lines.append(
            "<tr>"
            f'<td><a href="/resources/{_e(quote(row["name"], safe=""))}">{_e(row["name"])}</a></td>'
            f"<td>{_e(row['kind'])}</td><td>{_e(row['owner'])}</td>"
            f"<td>{_weights(row['weights'])}</td><td>{_health(row)}</td>"
            f"<td>{len(row['replicas'])} of {int(row['desired'])}: {_phases(row['replicas'])}</td>"
            f'<td class="num">{_num(traffic.get("requests"), "d")}</td>'
            f'<td class="num">{_num(traffic.get("rate"), ".2f")}</td>'
            f'<td class="num">{_p99(traffic.get("p99_le_s"))}</td>'
            f'<td class="num">{_num(traffic.get("error_pct"), ".1f", " %")}</td>'
            f'<td class="num">{_usd(traffic.get("cost_per_1k_usd"), traffic.get("cost_method"))}'
            "</td>"
            f'<td class="num">{_num(traffic.get("joules_per_request"), ".3g", " J")}</td>'
            "</tr>"
        )
    if lines:
        table = f"<table><thead>{head}</thead><tbody>{''.join(lines)}</tbody></table>"
    elif data["q"] or data["owner"] or data["page"] > 1:
        table = "<p>No Model or App matches on this page: change the search or the owner.</p>"
    else:
        table = "<p>Nothing is deployed: <code>kaip deploy PATH</code> adds Models and Apps.</p>"
    note = f'<p class="muted">{note}</p>' if note else ""
    body = f"<h1>Catalog</h1>{_catalog_form(data)}{_pager(data)}{table}{note}"
    return page("Catalog", body, csrf=csrf)


def _usd(value: float | None, method: str | None) -> str:
    if value is None:
        return "—"
    mark = "" if method == "measured" else ' <span class="muted" title="estimated">≈</span>'
    return f"${value:.4g}{mark}"


def _p99(bound: float | None) -> str:
    if bound is None:
        return "—"
    if bound == float("inf"):
        return "&gt; 10 s"
    return f"≤ {bound * 1000:g} ms"


def _when(at: float | None) -> str:
    if at is None:
        return "—"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def resource_page(
    row: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    *,
    csrf: str | None,
    live: str = "",
    head: str = "",
    playground: str = "",
    overview: str = "",
    logs: str = "",
    profile: str = "",
    charts: str = "",
) -> str:
    """One resource: its revisions, replicas and rollout history with every verdict; ``live``
    is the rollout section that the page's event stream keeps current; ``overview`` its
    endpoints, snippets and spec (:mod:`kaip.portal.overview`)."""
    name = row["name"]
    replicas = "".join(
        f"<tr><td>{_e(r['id'])}</td><td>{_e(r['revision'])}</td><td>{_e(r['phase'])}</td>"
        f'<td>{_e(r["health"])}</td><td class="num">{_count(r["restarts"])}</td>'
        f'<td class="num">{_e(r["port"])}</td><td>{"yes" if r["routed"] else "no"}</td></tr>'
        for r in row["replicas"]
    )
    rollouts = []
    for item in history:
        verdicts = "".join(
            f"<li>step {int(s['step_index']) + 1} at {int(s['weight'])} %: "
            f"<strong>{_e(s['action'])}</strong> — {_e(s['reason'])} "
            f'<span class="muted">(canary {_count(s["canary_requests"])} requests, '
            f"{_count(s['canary_errors'])} errors, p99 {_num(s['canary_p99_ms'], '.1f', ' ms')}; "
            f"stable {_count(s['stable_requests'])} requests, {_count(s['stable_errors'])} errors, "
            f"p99 {_num(s['stable_p99_ms'], '.1f', ' ms')}; {_when(s['at'])})</span></li>"
            for s in item["verdicts"]
        )
        rollouts.append(
            f'<tr><td class="num">{int(item["id"])}</td>'
            f"<td>rev {_e(item['from_revision'])} → rev {_e(item['to_revision'])}</td>"
            f"<td>{_e(item['strategy'])}</td><td>{_e(item['status'])}</td>"
            f"<td>{_when(item['started_at'])}</td><td>{_when(item['finished_at'])}</td>"
            f"<td>{_e(item['reason'])}<ul>{verdicts}</ul></td></tr>"
        )
    history_html = (
        "<table><thead><tr><th>#</th><th>Change</th><th>Strategy</th><th>Status</th>"
        "<th>Started</th><th>Finished</th><th>Verdicts</th></tr></thead>"
        f"<tbody>{''.join(rollouts)}</tbody></table>"
        if rollouts
        else "<p>No rollouts yet: the first deploy of a resource is not one.</p>"
    )
    canary = f", canary rev {_e(row['canary'])}" if row.get("canary") else ""
    body = (
        f"<h1>{_e(row['kind'])} {_e(name)}</h1>"
        f"<p>Owner <strong>{_e(row['owner'])}</strong> · stable rev {_e(row['stable'])}{canary}"
        f" · weights {_weights(row['weights'])} · {_health(row)}</p>"
        f"<p>Endpoint: <code>{_e(row['url'])}</code> · "
        f'<a href="/delivery?resource={_e(quote(name, safe=""))}">delivery (DORA)</a></p>'
        f"<h2>Rollout now</h2>{live}"
        + (f"<h2>Playground</h2>{playground}" if playground else "")
        + overview
        + "<h2>Replicas</h2><table><thead><tr><th>Id</th><th>Revision</th><th>Phase</th>"
        "<th>Health</th><th>Restarts</th><th>Port</th><th>Routed</th></tr></thead>"
        f"<tbody>{replicas}</tbody></table>"
        + (f"<h2>Traffic</h2>{charts}" if charts else "")
        + (f"<h2>Profile</h2>{profile}" if profile else "")
        + (f"<h2>Logs</h2>{logs}" if logs else "")
        + f"<h2>Rollouts</h2>{history_html}"
    )
    return page(f"{row['kind']} {name}", body, csrf=csrf, head=head)

"""The portal's delivery page: the five DORA numbers of a window, and the deployments behind them.

Pure rendering of what :func:`kaip.portal.delivery.as_json` answers (the page shows
exactly the API's numbers): a GET form picks the window and an owner or resource; each number
links to the rows of the deployments it counts; each comes with the 2024 DORA cluster values
as context, never as a ranking. Every value is escaped; no script.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from kaip.portal.pages import _e, _when, page


def duration(seconds: float | None) -> str:
    """``45 s``, ``30 min``, ``2.5 h``, ``3.2 d`` (— for none)."""
    if seconds is None:
        return "—"
    for limit, unit, size in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds / 86400:.3g} d"


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{100 * rate:.1f} %"


def _links(ids: Sequence[int]) -> str:
    if not ids:
        return '<span class="muted">none</span>'
    return " ".join(f'<a href="#d-{int(i)}">#{int(i)}</a>' for i in ids)


def _summary(label: str, summary: Mapping[str, Any]) -> str:
    return (
        f"median {duration(summary['median_s'])}, p90 {duration(summary['p90_s'])} "
        f'<span class="muted">({int(summary["count"])} {label})</span>'
    )


def _form(data: Mapping[str, Any], owners: Sequence[str]) -> str:
    chosen = data["filter"]
    options = "".join(
        f'<option value="{_e(o)}"{" selected" if o == chosen["owner"] else ""}>{_e(o)}</option>'
        for o in owners
    )
    return (
        '<form method="get" action="/delivery" class="filters">'
        f'<label>Last <input name="days" type="number" min="1" max="366" '
        f'value="{round(data["window"]["days"])}"> days</label> '
        f'<label>Owner <select name="owner"><option value="">every owner</option>{options}'
        "</select></label> "
        f'<label>Resource <input name="resource" value="{_e(chosen["resource"] or "")}" '
        'maxlength="253"></label> <button type="submit">Show</button></form>'
    )


def _rows(data: Mapping[str, Any]) -> str:
    freq, lead = data["deployment_frequency"], data["lead_time"]
    cfr, recovery, rework = data["change_fail_rate"], data["recovery_time"], data["rework_rate"]
    every = [int(d["id"]) for d in data["deployments"]]
    rows = (
        (
            "Deployment frequency",
            f"<strong>{freq['per_day']:.2f} per day</strong> "
            f'<span class="muted">({int(freq["deployments"])} deployments of '
            f"{int(freq['resources'])} resources in {data['window']['days']:g} days; "
            f"{_e(freq['band'])})</span>",
            _links(every),
            freq["bands_2024"],
        ),
        (
            "Change lead time: commit → 100 %",
            _summary("deployments", lead["commit"])
            + f' <span class="muted">{_e(lead["band"])}</span>',
            _links(lead["commit"]["deployments"]),
            lead["bands_2024"],
        ),
        (
            "Change lead time: new artifact → 100 %",
            _summary("deployments", lead["artifact"]),
            _links(lead["artifact"]["deployments"]),
            "no DORA clusters (kaip's model clock)",
        ),
        (
            "Change fail rate",
            f"<strong>{_percent(cfr['rate'])}</strong> "
            f'<span class="muted">({len(cfr["failed"])} of {int(cfr["decided"])} decided: '
            f"{len(cfr['caught_by_canary'])} caught by the canary, "
            f"{len(cfr['user_impacting'])} reached full traffic)</span>",
            f"caught by the canary: {_links(cfr['caught_by_canary'])}<br>"
            f"reached full traffic: {_links(cfr['user_impacting'])}",
            cfr["bands_2024"],
        ),
        (
            "Failed deployment recovery time",
            _summary("failures that reached full traffic", recovery)
            + f' <span class="muted">{_e(recovery["band"])}</span>',
            _links(recovery["deployments"]),
            recovery["bands_2024"],
        ),
        (
            "Deployment rework rate",
            f"<strong>{_percent(rework['rate'])}</strong> "
            f'<span class="muted">({len(rework["deployments"])} rollback deployments)</span>',
            _links(rework["deployments"]),
            rework["bands_2024"],
        ),
    )
    return "".join(
        f"<tr><th>{_e(name)}</th><td>{value}</td><td>{links}</td>"
        f'<td class="muted">{_e(bands)}</td></tr>'
        for name, value, links, bands in rows
    )


def _deployments(data: Mapping[str, Any]) -> str:
    lines = []
    for d in data["deployments"]:
        failure = {"caught_by_canary": "caught by the canary", "user_impacting": "reached users"}
        lines.append(
            f'<tr id="d-{int(d["id"])}"><td class="num">{int(d["id"])}</td>'
            f'<td><a href="/resources/{_e(quote(d["name"], safe=""))}">{_e(d["kind"])} '
            f"{_e(d['name'])}</a></td><td>{_e(d['owner'])}</td><td>{_e(d['revision'])}</td>"
            f"<td>{_when(d['started_at'])}</td><td>{_when(d['full_at'])}</td>"
            f"<td>{_e(d['ending'])}</td><td>{_e(failure.get(d['failure'], ''))}</td>"
            f"<td>{'rollback' if d['rework'] else ''}</td>"
            f'<td class="num">{duration(d["lead_commit_s"])}</td>'
            f'<td class="num">{duration(d["lead_artifact_s"])}</td>'
            f'<td class="num">{duration(d["recovery_s"])}</td></tr>'
        )
    if not lines:
        return "<p>No deployment started in this window.</p>"
    return (
        '<table id="deployments"><thead><tr><th>#</th><th>Resource</th><th>Owner</th>'
        "<th>Revision</th><th>Started</th><th>100 % at</th><th>Ended</th><th>Failure</th>"
        "<th>Rework</th><th>Lead (commit)</th><th>Lead (artifact)</th><th>Recovery</th>"
        f"</tr></thead><tbody>{''.join(lines)}</tbody></table>"
    )


def delivery_page(data: Mapping[str, Any], owners: Sequence[str], *, csrf: str | None) -> str:
    """The delivery (DORA) page for one window, owner or resource."""
    chosen = data["filter"]
    scope = (
        f"resource {_e(chosen['resource'])}"
        if chosen["resource"]
        else (f"owner {_e(chosen['owner'])}" if chosen["owner"] else "every owner")
    )
    body = (
        f"<h1>Delivery (DORA) · {scope}</h1>"
        f"<p>From {_when(data['window']['since'])} to {_when(data['window']['until'])}.</p>"
        f"{_form(data, owners)}"
        '<table class="dora"><thead><tr><th>Metric</th><th>Value</th>'
        "<th>Deployments behind it</th><th>2024 DORA clusters (context, not a ranking)</th>"
        f"</tr></thead><tbody>{_rows(data)}</tbody></table>"
        f'<p class="muted">{int(data["refused_by_quality_gate"])} model version(s) refused by a '
        "quality gate never served and are not deployments. Weekends are not excluded. "
        'Definitions: <a href="/api/v1/dora">the API</a> gives the same numbers as JSON; '
        "the README's portal section says how each is counted.</p>"
        f"<h2>Deployments</h2>{_deployments(data)}"
    )
    return page("Delivery", body, csrf=csrf)

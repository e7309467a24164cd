"""The CLI's one client of the running ``kaip up``: finds it, authenticates, maps its answers.

Finds the live run through ``.kaip/run.json`` (a record whose pid is no longer that ``kaip up``
counts as not running), reads this run's token from ``.kaip/admin.token`` and calls the control
port's versioned API (``/api/v1``) with ``Authorization: Bearer``. An answer the API refused
becomes the matching :mod:`kaip.errors` class with the API's own message: an invalid spec exits
2 with every problem, a refused credential 3, anything else 1. Every other local command goes
through :func:`call`; none builds a URL or a header of its own.
"""

from __future__ import annotations

from typing import Any

import httpx

from kaip.errors import AccessError, ConfigError, ForbiddenError, PlatformError
from kaip.local.controller import TOKEN_FILE, RunRecord, find_running, read_admin_token
from kaip.settings import Settings

TIMEOUT_S = 30.0


def running(settings: Settings) -> RunRecord:
    """The live ``kaip up`` of this directory, or a PlatformError saying how to start one."""
    state_dir = settings.local.state_dir
    lookup = find_running(state_dir)
    if lookup.record is None:
        raise PlatformError(
            f"kaip is not running here ({lookup.reason}): start it with `kaip up PATH`"
        )
    return lookup.record


def call(
    settings: Settings, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``method path`` on the control API with this run's token; the JSON answer."""
    record = running(settings)
    state_dir = settings.local.state_dir
    token = read_admin_token(state_dir)
    if token is None:
        raise AccessError(
            f"no admin token in {state_dir / TOKEN_FILE}: it is written by `kaip up` for each "
            "run; run this command as the user who started it, in the same directory"
        )
    headers = {"Authorization": f"Bearer {token}"}
    try:
        response = httpx.request(
            method,
            f"{record.admin_url}{path}",
            json=body if method != "GET" else None,
            headers=headers,
            timeout=TIMEOUT_S,
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        raise PlatformError(
            f"cannot reach kaip's control port at {record.admin_url}: {exc}"
        ) from None
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text}
    if not isinstance(data, dict):
        data = {"error": str(data)}
    status = response.status_code
    message = str(data.get("error", response.text))
    if status == 422 and isinstance(data.get("problems"), list):
        raise ConfigError("\n".join(map(str, data["problems"])))
    if status == 401:
        raise AccessError(f"{message} (is {state_dir / TOKEN_FILE} from another run?)")
    if status in (403, 421):
        raise ForbiddenError(message)
    if status >= 400:
        raise PlatformError(message)
    return data

"""``kaip profile``'s controller half: pick a ready replica of a Model and ask it for a profile.

Owns choosing the replica (the one named, else the first ready one), calling its authenticated
``POST /_kaip/profile`` with this run's profile token (see :mod:`kaip.serving.profiling`) and
bounding the wait. Never profiles anything itself and never shows the token.
"""

from __future__ import annotations

from typing import Any

import httpx

from kaip.errors import KaipError, PlatformError
from kaip.local.controller.loop import Controller


class ProfileNotFoundError(KaipError):
    """No such Model or replica here."""

    http_status = 404


class ProfileRefusedError(KaipError):
    """The replica refused or failed the profile (busy, or gone meanwhile)."""

    http_status = 409


async def profile_replica(
    controller: Controller,
    name: str,
    replica_id: str | None,
    seconds: float,
    rate: float,
    fmt: str,
) -> dict[str, Any]:
    """The replica's profile, with which replica and revision it came from."""
    run = controller.resources.get(name)
    if run is None or run.kind != "Model":
        raise ProfileNotFoundError(f"no Model named {name!r} runs here (`kaip status` lists them)")
    ready = [r for r in controller.supervisor.replicas(name) if r.serving and r.port]
    if replica_id is not None:
        ready = [r for r in ready if r.id == replica_id]
    if not ready:
        which = f"replica {replica_id!r}" if replica_id else "replica"
        raise ProfileNotFoundError(f"Model {name!r} has no ready {which} to profile")
    replica = ready[0]
    token = controller.config.profile_token
    url = f"http://127.0.0.1:{replica.port}/_kaip/profile"
    params: dict[str, str | float] = {"seconds": seconds, "rate": rate, "format": fmt}
    try:
        async with httpx.AsyncClient(timeout=seconds + 30, trust_env=False) as client:
            answer = await client.post(
                url, params=params, headers={"Authorization": f"Bearer {token}"}
            )
    except httpx.HTTPError as exc:
        raise PlatformError(f"replica {replica.id} did not answer the profile: {exc}") from None
    if answer.status_code != 200:
        raise ProfileRefusedError(
            f"replica {replica.id} answered {answer.status_code}: {answer.text[:500]}"
        )
    profile: Any = answer.json() if fmt == "speedscope" else answer.text
    return {
        "name": name,
        "replica": replica.id,
        "revision": replica.revision,
        "format": fmt,
        "profile": profile,
    }

"""``kaip up``'s control port: the admin API under ``/_kaip/``, the portal everywhere else.

:func:`control_port_app` routes by path only: ``/_kaip/...``, the admin API's calls in the
versioned API (``/api/v1/status``, ``deployments``, ``rollouts/NAME``, ``events``, ``cost``,
``profile/NAME``: :func:`~kaip.local.controller.admin.serves_v1`) and every WebSocket go to the
admin API behind :class:`~kaip.local.controller.guard.ControlGuard` (bearer tokens only, never
a cookie), every other HTTP request to the portal it is given (built by
:func:`kaip.portal.local.local_portal`, which guards itself). The portal lives above this layer
(:mod:`kaip.portal`), so whoever starts ``kaip up`` hands it in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kaip.local.controller.admin import admin_app, serves_v1
from kaip.local.controller.auth import Authenticator
from kaip.local.controller.guard import ASGIApp, ControlGuard, GuardPolicy, Receive, Scope, Send
from kaip.local.controller.sessions import SessionStore

if TYPE_CHECKING:
    from kaip.local.controller.costs import CostBook
    from kaip.local.controller.loop import Controller

PortalFactory = Callable[["Controller", Authenticator, GuardPolicy, SessionStore, str], ASGIApp]
"""Builds the portal for a controller: its bearer authenticator, Host/Origin policy, session
store and the name of the run's token file (for the login page)."""


def control_port_app(
    controller: Controller,
    bearer: Authenticator,
    policy: GuardPolicy,
    portal: ASGIApp,
    *,
    costs: CostBook | None = None,
) -> ASGIApp:
    """The control port: the admin API under ``/_kaip/``, ``portal`` everywhere else."""
    admin = ControlGuard(admin_app(controller, costs), bearer, policy)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        admin_path = path == "/_kaip" or path.startswith("/_kaip/") or serves_v1(path)
        if scope["type"] == "http" and not admin_path:
            await portal(scope, receive, send)
        else:
            await admin(scope, receive, send)

    return app

"""The portal of a cluster, wired and listening: what ``kaip portal`` runs.

:func:`serve_cluster_portal` puts :class:`~kaip.portal.kube.KubeSource` behind the portal app,
authenticates with :class:`~kaip.portal.kube_auth.KubeReviews`, guards it as ``kaip up``'s
portal is guarded (Host and Origin, bounded bodies, strict headers) and serves it with the
control port's server (uvicorn, bounded headers and connections) until the context ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from kaip.errors import ConfigError, PlatformError
from kaip.kube.client import Session
from kaip.local.controller.control import ControlServer
from kaip.local.controller.guard import GuardPolicy, normalize_hosts
from kaip.local.controller.sessions import SessionStore
from kaip.portal.app import LoginText, PortalGuard, portal_app
from kaip.portal.kube import KubeSource
from kaip.portal.kube_auth import KubeReviews
from kaip.portal.prometheus import PrometheusTraffic

LOGIN = LoginText(
    hint="Paste a Kubernetes bearer token: yours, or a ServiceAccount's "
    "(kubectl create token NAME -n NAMESPACE). RBAC decides what it may read and do.",
    refused="The cluster did not accept that token (TokenReview): create a fresh one.",
)


@asynccontextmanager
async def serve_cluster_portal(
    session: Session,
    namespace: str | None,
    host: str,
    port: int,
    allowed_hosts: Sequence[str] = (),
    prometheus_url: str | None = None,
) -> AsyncIterator[str]:
    """Serve the portal for ``namespace`` (None: every one) on ``host:port``; yields its URL.
    With ``prometheus_url`` the catalog shows traffic and resource pages draw charts."""
    try:
        names = normalize_hosts(allowed_hosts)
    except ValueError as exc:
        raise ConfigError(f"--allowed-host: {exc}") from None
    reviews = KubeReviews(session, namespace)
    traffic = None if prometheus_url is None else PrometheusTraffic(prometheus_url)
    source = KubeSource(session, namespace, reviews, traffic=traffic)
    policy = GuardPolicy(
        allowed_hosts=names,
        credential_hint="send 'Authorization: Bearer TOKEN' with a Kubernetes token",
    )
    app = PortalGuard(portal_app(source, reviews.authenticate, SessionStore(), LOGIN), policy)
    server = ControlServer(app, host=host, port=port)
    try:
        bound = await server.start()
    except OSError as exc:
        raise PlatformError(f"--host {host} --port {port}: cannot listen there ({exc})") from None
    try:
        yield f"http://{host}:{bound}"
    finally:
        await server.stop()
        if traffic is not None:
            await traffic.aclose()

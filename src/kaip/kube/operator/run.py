"""Starting the operator: one session, one reconciler, kopf's loop until SIGTERM.

kopf authenticates with the same credentials as the :class:`~kaip.kube.client.Session` (the
kubeconfig and context given on the command line, or the pod's service account), so the
operator's watches and its applies run as one identity -- the one the Helm chart's RBAC grants.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import kopf

from kaip.kube.client import Session
from kaip.kube.operator.handlers import Controller, configure
from kaip.kube.operator.metrics import MetricsSource
from kaip.kube.operator.reconcile import Reconciler
from kaip.settings import Settings

log = logging.getLogger("kaip.operator")


def _login(session: Session) -> Any:
    def login(**_: Any) -> kopf.ConnectionInfo:
        credentials = session.credentials()  # kopf logs in again on a 401: re-read the token
        return kopf.ConnectionInfo(
            server=credentials.server,
            ca_path=credentials.ca_file,
            insecure=credentials.insecure or None,
            token=credentials.token,
            scheme="Bearer" if credentials.token else None,
            certificate_path=credentials.cert_file,
            private_key_path=credentials.key_file,
            default_namespace=session.namespace,
        )

    return login


def run_operator(
    session: Session,
    settings: Settings,
    metrics: MetricsSource,
    *,
    namespaces: Sequence[str] = (),
    interval: float = 5.0,
    resync: float = 60.0,
    liveness: str | None = None,
) -> None:
    """Reconcile kaip resources in ``namespaces`` (every namespace when empty) until stopped."""
    reconciler = Reconciler(session, settings, metrics)
    controller = Controller(reconciler, interval=interval, resync=resync)
    registry = controller.registry(_login(session))
    operator_settings = kopf.OperatorSettings()
    configure(operator_settings)
    where = ", ".join(namespaces) if namespaces else "all namespaces"
    log.info("kaip operator watching %s on %s (%s)", where, session.server, session.context)
    controller.schedule.start()
    try:
        kopf.run(
            registry=registry,
            settings=operator_settings,
            standalone=True,
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            liveness_endpoint=liveness,
        )
    finally:
        controller.schedule.stop()

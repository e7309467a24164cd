"""Starting the operator: one session, one reconciler, kopf's loop until SIGTERM.

kopf authenticates with the same credentials as the :class:`~kaip.kube.client.Session` (the
kubeconfig and context given on the command line, or the pod's service account), so the
operator's watches and its applies run as one identity -- the one the Helm chart's RBAC grants.

With leader election (the default; :mod:`.leader`), a replica first waits, answering its
liveness probe, until it holds the Lease; only then does kopf start watching. While it leads,
every write of the reconciler's session is fenced by the Lease; if it loses the Lease the
process exits at once (status 1) and comes back, through its restart policy, as a candidate.
On SIGTERM it stops kopf, then gives the Lease back so another replica takes over without
waiting for it to expire.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kopf

from kaip.accounting import PriceBook
from kaip.kube.client import Session
from kaip.kube.operator.handlers import Controller, configure
from kaip.kube.operator.leader import LeaseElector, Timings
from kaip.kube.operator.metrics import MetricsSource
from kaip.kube.operator.reconcile import Reconciler
from kaip.notify import BackgroundNotifier
from kaip.render.kube.training import JOBSET_API
from kaip.settings import Settings

log = logging.getLogger("kaip.operator")

LOST_LEADERSHIP_EXIT = 1


@dataclass(frozen=True)
class Election:
    """Who this replica is and which Lease it competes for (on its own session)."""

    session: Session
    namespace: str
    name: str
    identity: str
    timings: Timings = field(default_factory=Timings)


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


@contextlib.contextmanager
def _standby_liveness(liveness: str | None) -> Iterator[None]:
    """Answer the liveness probe while waiting for the Lease (kopf serves it once leading)."""
    if not liveness:
        yield
        return
    url = urllib.parse.urlsplit(liveness)
    path = url.path or "/"

    class Alive(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path.split("?", 1)[0] == path
            body = b'{"standby": true}' if ok else b""
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((url.hostname or "0.0.0.0", url.port or 80), Alive)
    thread = threading.Thread(target=server.serve_forever, name="standby-liveness", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _lost() -> None:
    logging.shutdown()
    os._exit(LOST_LEADERSHIP_EXIT)  # no write may follow; the restart policy brings it back


def run_operator(
    session: Session,
    settings: Settings,
    metrics: MetricsSource,
    *,
    namespaces: Sequence[str] = (),
    interval: float = 5.0,
    resync: float = 60.0,
    liveness: str | None = None,
    election: Election | None = None,
    prices: PriceBook | None = None,
) -> None:
    """Reconcile kaip resources in ``namespaces`` (every namespace when empty) until stopped."""
    stop = threading.Event()
    keeper: threading.Thread | None = None
    if election is not None:
        elector = LeaseElector(
            election.session, election.namespace, election.name, election.identity,
            election.timings,
        )  # fmt: skip
        with _standby_liveness(liveness):
            elector.acquire(stop)
        session.write_guard = elector.check
        keeper = threading.Thread(
            target=elector.keep, args=(stop, _lost), name="leader-election", daemon=True
        )
        keeper.start()
    if not settings.kube.jobset and session.resource(JOBSET_API, "JobSet") is not None:
        log.info("the cluster serves JobSet: TrainingJobs with nodes > 1 run as JobSets")
        kube = settings.kube.model_copy(update={"jobset": True})
        settings = settings.model_copy(update={"kube": kube})
    notifier = BackgroundNotifier(log.warning)
    reconciler = Reconciler(
        session, settings, metrics, notify=notifier.send, prices=prices or PriceBook()
    )
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
        notifier.close()
        stop.set()
        if keeper is not None:
            keeper.join(timeout=10)  # it gives the Lease back on its way out

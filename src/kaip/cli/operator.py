"""``kaip operator``: run the kaip operator against the cluster of a kubeconfig or in a pod."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

import typer

from kaip.accounting import PriceBook, PriceConfigError
from kaip.accounting.prices import MAX_CONFIG_BYTES, PRICES_FILE_ENV
from kaip.cli.kube_commands import ContextOption, InClusterKubeconfigOption
from kaip.errors import ConfigError


def operator(
    namespaces: list[str] = typer.Option(
        [], "--namespace", "-n", help="namespace to watch (repeatable; default: all namespaces)"
    ),
    kubeconfig: str | None = InClusterKubeconfigOption,
    context: str | None = ContextOption,
    prometheus_url: str | None = typer.Option(
        None,
        "--prometheus-url",
        help="Prometheus HTTP API for the canary gates (default: settings.kube.prometheus_url)",
    ),
    interval: float = typer.Option(
        5.0,
        "--interval",
        min=0.5,
        help="seconds between checks of a canary in progress, and before retrying a failed pass",
    ),
    resync: float = typer.Option(
        60.0,
        "--resync",
        min=1.0,
        help="seconds between checks of a resource waiting for its workloads (their watch "
        "events drive it; this is a safety net)",
    ),
    rediscover: float = typer.Option(
        30.0,
        "--rediscover",
        min=0.5,
        max=3600,
        help="seconds before a kind the cluster did not serve (a CRD such as KEDA's or "
        "InferencePool not installed yet) is looked up again: how soon a CRD installed later "
        "is used",
    ),
    liveness: str | None = typer.Option(
        None, "--liveness", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz"
    ),
    leader_elect: bool = typer.Option(
        True,
        "--leader-elect/--no-leader-elect",
        help="take a coordination.k8s.io Lease before reconciling, so that replicas (or an "
        "operator on a workstation) never work at once",
    ),
    lease_namespace: str | None = typer.Option(
        None,
        "--leader-election-namespace",
        help="namespace of the Lease (default: the pod's, else the kubeconfig context's); "
        "every replica must use the same",
    ),
    lease_name: str = typer.Option("kaip-operator", "--leader-election-name", help="Lease name"),
    identity: str | None = typer.Option(
        None,
        "--leader-identity",
        envvar="POD_NAME",
        help="this replica's name in the Lease (default: $POD_NAME, else HOST_PID)",
    ),
    lease_duration: float = typer.Option(
        15.0, "--lease-duration", min=1.0, help="seconds a Lease holds without renewal"
    ),
    renew_deadline: float = typer.Option(
        10.0, "--renew-deadline", min=0.5, help="seconds the leader keeps trying to renew"
    ),
    retry_period: float = typer.Option(
        2.0, "--retry-period", min=0.1, help="seconds between attempts to take or renew"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log every reconcile"),
) -> None:
    """Reconcile Model, App and TrainingJob custom resources until stopped (SIGTERM, Ctrl-C)."""
    try:
        from kaip.kube.client import Session
        from kaip.kube.operator.leader import Timings
        from kaip.kube.operator.metrics import PrometheusMetrics
        from kaip.kube.operator.run import Election, run_operator
    except ImportError as exc:
        raise ConfigError(
            f"the operator needs the kube extras ({exc}): pip install 'kaip[kube]'"
        ) from None
    from kaip.settings import load_settings

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:  # kopf and httpx report every request at INFO; kaip logs its decisions
        for noisy in ("kopf", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        timings = Timings(lease_duration, renew_deadline, retry_period)
    except ValueError as exc:
        raise ConfigError(f"--lease-duration, --renew-deadline, --retry-period: {exc}") from None
    settings = load_settings()
    in_cluster = kubeconfig is None and Session.in_cluster_available()

    def connect() -> Session:
        return Session.in_cluster() if in_cluster else Session.connect(kubeconfig, context)

    session = connect()
    session.rediscover_after = rediscover
    me = identity or f"{socket.gethostname()}_{os.getpid()}"
    session.user_agent = f"kaip-operator ({me})"
    metrics = PrometheusMetrics(prometheus_url or settings.kube.prometheus_url)
    prices = _price_book(os.environ)
    election = None
    if leader_elect:
        lease_session = connect()  # its own: the reconciler's session is fenced by the Lease
        lease_session.user_agent = session.user_agent
        election = Election(
            lease_session, lease_namespace or session.namespace, lease_name, me, timings
        )
    with session:
        session.version()  # fail now, with one clear message, if the cluster is not there
        run_operator(
            session,
            settings,
            metrics,
            namespaces=namespaces,
            interval=interval,
            resync=resync,
            liveness=liveness,
            election=election,
            prices=prices,
        )


def _price_book(environ: Mapping[str, str]) -> PriceBook:
    """The operator's prices per owner and node type: the file ``KAIP_COST_PRICES_FILE`` names
    (the chart mounts ``cost.prices`` there), else OpenCost's defaults for every revision."""
    name = environ.get(PRICES_FILE_ENV, "").strip()
    if not name:
        return PriceBook()
    try:
        with open(name, "rb") as f:
            return PriceBook.from_yaml(f.read(MAX_CONFIG_BYTES + 1), source=name)
    except OSError as exc:
        raise ConfigError(f"{PRICES_FILE_ENV}={name}: cannot read it ({exc.strerror})") from None
    except PriceConfigError as exc:
        raise ConfigError(f"{PRICES_FILE_ENV}={name}: {exc}") from None

"""``kaip operator``: run the kaip operator against the cluster of a kubeconfig or in a pod."""

from __future__ import annotations

import logging

import typer

from kaip.errors import ConfigError


def operator(
    namespaces: list[str] = typer.Option(
        [], "--namespace", "-n", help="namespace to watch (repeatable; default: all namespaces)"
    ),
    kubeconfig: str | None = typer.Option(
        None,
        "--kubeconfig",
        envvar="KUBECONFIG",
        help="kubeconfig file (default: the pod's service account, then ~/.kube/config)",
    ),
    context: str | None = typer.Option(None, "--context", help="kubeconfig context"),
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
    liveness: str | None = typer.Option(
        None, "--liveness", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log every reconcile"),
) -> None:
    """Reconcile Model, App and TrainingJob custom resources until stopped (SIGTERM, Ctrl-C)."""
    try:
        from kaip.kube.client import Session
        from kaip.kube.operator.metrics import PrometheusMetrics
        from kaip.kube.operator.run import run_operator
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
    settings = load_settings()
    if kubeconfig is None and Session.in_cluster_available():
        session = Session.in_cluster()
    else:
        session = Session.connect(kubeconfig, context)
    metrics = PrometheusMetrics(prometheus_url or settings.kube.prometheus_url)
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
        )

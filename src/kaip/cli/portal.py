"""``kaip portal``: a cluster's portal, as ``kaip up`` serves it locally (same pages, same API).

Parse, connect, serve: the pages and ``/api/v1`` are :mod:`kaip.portal.app`'s, the data comes
from :class:`kaip.portal.kube.KubeSource` (the custom resources of one namespace, or of all with
``--all-namespaces``), and every request needs a Kubernetes user's bearer token, checked by
TokenReview and SubjectAccessReview (:mod:`kaip.portal.kube_auth`). In a pod it uses the pod's
service account; elsewhere a kubeconfig. Runs until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import signal
from urllib.parse import urlsplit

import typer

from kaip.cli.kube_commands import ContextOption, InClusterKubeconfigOption
from kaip.errors import ConfigError


def portal(
    kubeconfig: str | None = InClusterKubeconfigOption,
    context: str | None = ContextOption,
    namespace: str | None = typer.Option(
        None, "--namespace", "-n", help="the namespace shown (default: the context's, or the pod's)"
    ),
    all_namespaces: bool = typer.Option(
        False, "--all-namespaces", "-A", help="show every namespace (names become NS:NAME)"
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0 in a pod)"),
    port: int = typer.Option(8090, "--port", min=0, max=65535, help="port to listen on"),
    allowed_host: list[str] = typer.Option(
        [],
        "--allowed-host",
        help="a Host name the portal answers to besides the loopback ones (repeatable), e.g. "
        "the Service's DNS name",
    ),
    prometheus: str | None = typer.Option(
        None,
        "--prometheus",
        envvar="KAIP_PORTAL_PROMETHEUS",
        help="the Prometheus that scrapes the replicas (http://HOST:9090): traffic numbers in "
        "the catalog and charts on resource pages",
    ),
) -> None:
    """Serve the portal for kaip's resources on a cluster; users log in with a Kubernetes token."""
    if all_namespaces and namespace is not None:
        raise ConfigError("give --namespace NS or --all-namespaces, not both")
    if prometheus is not None and urlsplit(prometheus).scheme not in ("http", "https"):
        raise ConfigError(
            f"--prometheus {prometheus!r}: an http(s) URL, e.g. http://prometheus:9090"
        )
    try:
        from kaip.kube.client import Session
        from kaip.portal.serve import serve_cluster_portal
    except ImportError as exc:
        raise ConfigError(f"the portal on a cluster needs the kube extras ({exc}): "
                          "pip install 'kaip[kube]'") from None  # fmt: skip
    in_cluster = kubeconfig is None and Session.in_cluster_available()
    session = Session.in_cluster() if in_cluster else Session.connect(kubeconfig, context)
    session.user_agent = "kaip-portal"
    session.version()  # fail now, with one clear message, if the cluster is not there
    shown = None if all_namespaces else namespace or session.namespace or "default"

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        where = "every namespace" if shown is None else f"namespace {shown}"
        async with serve_cluster_portal(
            session, shown, host, port, allowed_host, prometheus
        ) as url:
            typer.echo(f"kaip portal: {url} shows {where} of {session.server}", err=True)
            await stop.wait()

    with session:
        asyncio.run(main())

"""``kaip rollout status|promote|abort|undo NAME``: a rollout, locally or on a cluster.

Without cluster flags these talk to the running ``kaip up`` through
:mod:`kaip.cli.admin_client`; with ``-n``, ``--kubeconfig`` or ``--context`` they act on the
operator's resource through :mod:`kaip.kube.operator.rollout_client`. Parse, call, print: the
decisions live in :mod:`kaip.local.controller` and :mod:`kaip.kube.operator`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import typer

from kaip.cli import admin_client
from kaip.cli.local import follow, who
from kaip.cli.output import OutputFormat, output_option, print_data, stdout
from kaip.cli.rollout_wait import DEFAULT_TIMEOUT, parse_timeout, progress_line, target_of
from kaip.errors import ConfigError
from kaip.settings import load_settings

if TYPE_CHECKING:
    from kaip.kube.operator.rollout_client import ClusterRollouts

ClusterKubeconfig = typer.Option(
    None, "--kubeconfig", help="act on the operator's resource in this cluster (not kaip up)"
)
ClusterContext = typer.Option(None, "--context", help="kubeconfig context (with a cluster)")
ClusterNamespace = typer.Option(
    None, "--namespace", "-n", help="the resource's namespace on the cluster (implies a cluster)"
)
rollout_app = typer.Typer(help="Watch, promote, abort or undo a rollout.", no_args_is_help=True)


@rollout_app.command("status")
def rollout_status(
    name: str = typer.Argument(..., help="Model or App name"),
    watch: bool = typer.Option(False, "--watch", "-w", help="print changes until it ends"),
    timeout: str = typer.Option(
        DEFAULT_TIMEOUT, "--timeout", help="with --watch: give up after this long (90s, 10m, 1h)"
    ),
    kubeconfig: str | None = ClusterKubeconfig,
    context: str | None = ClusterContext,
    namespace: str | None = ClusterNamespace,
    output: OutputFormat = output_option(
        help="text, or json or yaml: the rollout as data (not with --watch)"
    ),
) -> None:
    """Where the rollout of NAME stands, and its past verdicts (with -w, follow it to the end).

    With --watch, the exit code is the outcome of the running rollout, or of the latest one
    when none runs: 0 promoted, 4 rolled back, 5 aborted or superseded, 6 still running at
    --timeout. With -n or --kubeconfig, the same for the operator's resource on a cluster.
    """
    timeout_seconds = parse_timeout(timeout)
    if output.structured and watch:
        raise ConfigError(
            f"-o {output.value} prints the rollout once; --watch follows it as text: use one"
        )
    cluster = _cluster(name, kubeconfig, context, namespace)
    if cluster is not None:
        if output.structured:
            body = cluster.body()
            print_data(output, {
                "kind": body.get("kind"), "name": name, "namespace": cluster.namespace,
                "status": body.get("status") or {},
            })  # fmt: skip
        elif watch:
            cluster.watch(timeout_seconds)
        else:
            cluster.say(cluster.line(cluster.body()))
        return
    settings = load_settings()
    answer = admin_client.call(settings, "GET", f"/api/v1/rollouts/{name}")
    if output.structured:
        print_data(output, answer)
        return
    _print_rollout(name, answer, history=True)
    if not watch:
        return
    follow(settings, [target_of(answer, name)], timeout_seconds)
    final = admin_client.call(settings, "GET", f"/api/v1/rollouts/{name}")
    if not (final.get("resource") or {}).get("rollout"):
        _print_rollout(name, final, history=False)


def _print_rollout(name: str, answer: dict[str, Any], *, history: bool) -> None:
    resource = answer.get("resource") or {}
    current = resource.get("rollout")
    if current:
        stdout.print(
            f"{resource['kind']} {name}: {current['from']} -> {current['to']} "
            f"({current['strategy']}), steps {current['steps']}",
            markup=False,
        )
        canary = current["canary"]
        stdout.print(
            f"{progress_line(answer, prefix='  ')} "
            f"(canary this step: {canary['requests']} requests, {canary['errors']} errors)",
            markup=False,
        )
    else:
        stdout.print(f"{name}: no rollout in progress (stable {resource.get('stable')})")
    for past in answer.get("history", [])[: 5 if history else 1]:
        stdout.print(
            f"  #{past['id']} {past['from_revision']} -> {past['to_revision']}: {past['status']}"
            + (f" ({past['reason']})" if past["reason"] else ""),
            markup=False,
        )


@rollout_app.command("promote")
def rollout_promote(
    name: str = typer.Argument(..., help="Model or App name"),
    full: bool = typer.Option(False, "--full", help="skip every remaining step, even a pause"),
    kubeconfig: str | None = ClusterKubeconfig,
    context: str | None = ClusterContext,
    namespace: str | None = ClusterNamespace,
) -> None:
    """Release the manual pause the rollout of NAME waits at; else promote it to stable now.

    At a step with `pause: {}` the rollout goes on to its next step (the gates still judge
    it); anywhere else, or with --full, the canary becomes stable at once.
    """
    cluster = _cluster(name, kubeconfig, context, namespace)
    if cluster is not None:
        cluster.say(cluster.command("promote-full" if full else "promote", who()))
        return
    answer = admin_client.call(load_settings(), "POST", _action(name, "promote"),
                               {"who": who(), "full": full})  # fmt: skip
    stdout.print(answer["message"], markup=False)


@rollout_app.command("undo")
def rollout_undo(
    name: str = typer.Argument(..., help="Model or App name"),
    to_revision: str | None = typer.Option(
        None, "--to-revision", "-r", help="revision (or unique prefix) to go back to"
    ),
    kubeconfig: str | None = ClusterKubeconfig,
    context: str | None = ClusterContext,
    namespace: str | None = ClusterNamespace,
) -> None:
    """Roll out the revision before the stable one of NAME again (or --to-revision R).

    The old revision goes through the rollout's steps and gates like any new one; follow it
    with `kaip rollout status NAME --watch`. On a cluster (-n, --kubeconfig) the spec of the
    revision before stable is written back to the resource.
    """
    cluster = _cluster(name, kubeconfig, context, namespace)
    if cluster is not None:
        cluster.say(cluster.undo(to_revision))
        return
    body: dict[str, Any] = {"who": who()}
    if to_revision is not None:
        body["to_revision"] = to_revision
    answer = admin_client.call(load_settings(), "POST", _action(name, "undo"), body)
    stdout.print(answer["message"], markup=False)


@rollout_app.command("abort")
def rollout_abort(
    name: str = typer.Argument(..., help="Model or App name"),
    kubeconfig: str | None = ClusterKubeconfig,
    context: str | None = ClusterContext,
    namespace: str | None = ClusterNamespace,
) -> None:
    """Stop the rollout of NAME and send all traffic back to the stable revision."""
    cluster = _cluster(name, kubeconfig, context, namespace)
    if cluster is not None:
        cluster.say(cluster.command("abort", who()))
        return
    answer = admin_client.call(load_settings(), "POST", _action(name, "abort"),
                               {"who": who()})  # fmt: skip
    stdout.print(answer["message"], markup=False)


def _action(name: str, action: str) -> str:
    """The portal API's path for a rollout action (``/api/v1``, the versioned API the portal's
    own buttons use; the run's token lets the CLI name the OS user who acts)."""
    return f"/api/v1/resources/{quote(name, safe='')}/{action}"


def _cluster(
    name: str, kubeconfig: str | None, context: str | None, namespace: str | None
) -> ClusterRollouts | None:
    """The cluster's rollout of NAME when a cluster flag was given, else None (kaip up's)."""
    if kubeconfig is None and context is None and namespace is None:
        return None
    from kaip.kube.operator.rollout_client import ClusterRollouts, connect, namespace_of

    session = connect(kubeconfig, context)
    return ClusterRollouts(
        session,
        namespace_of(session, namespace),
        name,
        say=lambda line: stdout.print(line, markup=False),
    )


def register(app: typer.Typer) -> None:
    """Add ``kaip rollout`` to the ``kaip`` CLI."""
    app.add_typer(rollout_app, name="rollout")

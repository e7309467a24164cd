"""``kaip gitops commit``: render spec files into a git repository, one commit per change."""

from __future__ import annotations

from pathlib import Path

import typer

from kaip.cli.output import stdout
from kaip.gitops import commit_files
from kaip.plan import build_plan
from kaip.render.kube import kustomize_files, render_manifests
from kaip.render.kube.output import GENERATED_HEADER
from kaip.settings import load_settings
from kaip.spec import load_paths

app = typer.Typer(
    name="gitops",
    help="Render specs into a git repository that Argo CD or Flux syncs.",
    no_args_is_help=True,
)


@app.command()
def commit(
    path: Path = typer.Argument(..., help="spec file or directory"),
    repo: Path = typer.Option(..., "--repo", help="the git repository (a clone) to commit into"),
    directory: str | None = typer.Option(
        None, "--dir", help="directory inside the repository (default: the spec path's name)"
    ),
    namespace: str | None = typer.Option(
        None, "--namespace", "-n", help="namespace of resources that do not name one"
    ),
) -> None:
    """Render PATH into --repo/--dir with a kustomization.yaml and commit it if it changed."""
    settings = load_settings()
    specs = load_paths([path])
    objects = render_manifests(build_plan(specs.documents, settings, namespace))
    target = directory or (path.resolve().stem if path.is_file() else path.resolve().name)
    result = commit_files(
        repo, target, kustomize_files(objects), header=GENERATED_HEADER, source=str(path)
    )
    if result.commit is None:
        stdout.print(f"{repo}/{target} is up to date: nothing to commit")
        return
    subject = result.message.splitlines()[0]
    stdout.print(f"committed {result.commit[:12]} in {repo}: {subject}", markup=False)

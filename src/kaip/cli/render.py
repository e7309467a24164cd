"""``kaip render``: spec files -> Kubernetes manifests on stdout or in a kustomize directory."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import typer

from kaip.cli.output import ManifestFormat, note_skipped, output_option, print_json, stdout
from kaip.errors import ConfigError
from kaip.plan import build_plan
from kaip.render.kube import kustomize_files, manifests_yaml, render_manifests
from kaip.render.kube.output import GENERATED_HEADER, KUSTOMIZATION
from kaip.settings import load_settings
from kaip.spec import load_paths

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def render(
    paths: list[Path] = typer.Argument(
        ..., help="spec files or directories (searched recursively)"
    ),
    out: Path | None = typer.Option(
        None, "--out", help="write one file per object and a kustomization.yaml into DIR"
    ),
    namespace: str | None = typer.Option(
        None, "--namespace", "-n", help="namespace of resources that do not name one"
    ),
    output: ManifestFormat = output_option(
        ManifestFormat.yaml, "yaml (a multi-document stream) or json (a v1 List)"
    ),
) -> None:
    """Render spec files as Kubernetes manifests (multi-document YAML on stdout)."""
    if namespace is not None and not _NAMESPACE.match(namespace):
        raise ConfigError(
            f"--namespace {namespace!r} is not a valid namespace name: use up to 63 lower-case "
            "letters, digits and '-', starting and ending with a letter or digit"
        )
    settings = load_settings()
    specs = load_paths(paths)
    note_skipped(specs)
    objects = render_manifests(build_plan(specs.documents, settings, namespace))
    if out is None and output is ManifestFormat.json:
        print_json({"apiVersion": "v1", "kind": "List", "items": [dict(o) for o in objects]})
        return
    if out is None:
        sys.stdout.write(manifests_yaml(objects))
        return
    files = kustomize_files(objects)
    _write_directory(out, files)
    stdout.print(f"wrote {len(objects)} objects to {out}/ (apply with: kubectl apply -k {out})")


def _generated(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.read(len(GENERATED_HEADER)) == GENERATED_HEADER
    except (OSError, UnicodeDecodeError):
        return False


def _write_directory(out: Path, files: dict[str, str]) -> None:
    """Write ``files`` into ``out``, replacing an earlier ``kaip render`` output there.

    A directory holding anything else is refused, so that no user file is overwritten or
    left to be picked up as a stale object.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    if out.is_dir():
        entries = list(out.iterdir())
        ours = [p for p in entries if p.suffix == ".yaml" and _generated(p)]
        if entries and (len(ours) != len(entries) or not (out / KUSTOMIZATION).exists()):
            foreign = sorted(p.name for p in entries if p not in ours)
            raise ConfigError(
                f"--out {out}: the directory holds files kaip render did not write "
                f"({', '.join(foreign) or KUSTOMIZATION + ' missing'}); "
                "choose an empty or new directory"
            )
        for stale in ours:
            stale.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (out / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write: {exc.strerror or exc}") from None

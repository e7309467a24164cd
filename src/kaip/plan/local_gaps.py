"""What of a spec only a cluster provides, and what ``kaip up`` does about each part.

Locally there is no Secret, ConfigMap, volume or node, so:

* a variable in ``envValueFrom`` must come from ``kaip up``'s own environment (replicas inherit
  it): a missing one is a problem that stops ``kaip up`` / ``kaip deploy`` before anything
  starts, naming the field and the variable to export; a missing ``optional: true`` one is a
  notice, as on a cluster where the pod starts without it;
* ``envFrom`` (every key of an object) and ``volumes`` cannot be honoured: a notice each, so a
  spec never silently runs without them;
* scheduling (``nodeSelector``, ``tolerations``, ``affinity``, ``priorityClassName``),
  ``serviceAccountName``, ``imagePullSecrets`` and ``serve.image`` have no local meaning and
  are ignored without a word.

Pure: the environment is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kaip.errors import Problem
from kaip.spec import SpecSet


@dataclass(frozen=True)
class LocalGaps:
    """Problems stop a local run; notices are printed and the run goes on."""

    problems: list[Problem] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def local_gaps(specs: SpecSet, environ: Mapping[str, str]) -> LocalGaps:
    gaps = LocalGaps()
    for doc in specs.documents:
        resource = doc.resource
        spec = resource.spec
        what = f"{resource.kind} {resource.metadata.name}"
        for name, source in spec.env_value_from.items():
            if name in environ:
                continue
            ref = source.ref
            origin = f"{source.kind} {ref.name!r}, key {ref.key!r}"
            if ref.optional:
                gaps.notices.append(
                    f"{what}: {name} (optional, from {origin} on Kubernetes) is not set in "
                    "this environment; it runs without it"
                )
                continue
            gaps.problems.append(
                Problem(
                    str(doc.path),
                    doc.line,
                    1,
                    f"spec.envValueFrom.{name}",
                    f"{what} takes {name} from {origin} on Kubernetes; locally it comes from "
                    f"kaip's own environment, where {name} is not set",
                    f"export {name}=... before kaip up, or mark the reference optional: true",
                )
            )
        for index, env_from in enumerate(spec.env_from):
            gaps.notices.append(
                f"{what}: spec.envFrom[{index}] ({env_from.kind} {env_from.ref.name!r}) is read "
                "on Kubernetes only; locally its variables come from kaip's environment"
            )
        for volume in spec.volumes:
            gaps.notices.append(
                f"{what}: volume {volume.name!r} ({volume.source}) is mounted at "
                f"{volume.mount_path} on Kubernetes only; locally nothing is mounted there"
            )
    return gaps

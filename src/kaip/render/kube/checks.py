"""What a valid spec must still satisfy to become Kubernetes objects.

The spec is target-neutral; Kubernetes adds limits of its own: object names of 63 characters
(kaip appends ``-REVISION``), Service names starting with a letter, label syntax, an image for
every App, and no two resources of different kinds owning the same names. Each problem points
at the spec file, line and field, like :mod:`kaip.spec` problems do. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from kaip.errors import Problem
from kaip.plan import REVISION_LENGTH, Workload
from kaip.render.kube.artifacts import ArtifactPathProblem, place_artifact
from kaip.render.kube.engine import engine_model_path
from kaip.render.kube.inference_pool import (
    REVISION_PICKER_DIGITS,
    picker_name,
    route_name,
    uses_inference_pool,
)
from kaip.spec import App, Model, TrainingJob

MAX_NAME: Final = 63
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _problem(workload: Workload, path: str, message: str, hint: str = "") -> Problem:
    file = str(workload.source) if workload.source else "<spec>"
    return Problem(file, workload.line, 1, path, message, hint)


def label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"label key {key!r} has an invalid prefix (a DNS subdomain such as example.com)"
    if len(name) > MAX_NAME or not _LABEL_NAME.match(name):
        return (
            f"label key {key!r} is not valid: up to 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if len(value) > MAX_NAME or not _LABEL_VALUE.match(value):
        return (
            f"{value!r} cannot be a Kubernetes label value: up to 63 letters, digits, '-', '_' "
            "or '.', starting and ending with a letter or digit"
        )
    return None


def _name_budget(workload: Workload) -> int:
    """The longest ``metadata.name`` whose derived object and pod host names still fit."""
    budget = MAX_NAME - REVISION_LENGTH - 1
    resource = workload.resource
    if isinstance(resource, TrainingJob) and resource.spec.nodes > 1:
        budget -= 1 + len(str(resource.spec.nodes - 1))  # pod hostname NAME-REV-INDEX
    return budget


def workload_problems(workload: Workload) -> list[Problem]:
    resource = workload.resource
    name = workload.name
    problems: list[Problem] = []
    budget = _name_budget(workload)
    if len(name) > budget:
        problems.append(
            _problem(
                workload,
                "metadata.name",
                f"name {name!r} has {len(name)} characters; on Kubernetes kaip names objects "
                f"NAME-REVISION, so this {resource.kind} may have at most {budget}",
                "choose a shorter name",
            )
        )
    if not name[0].isalpha():
        problems.append(
            _problem(
                workload,
                "metadata.name",
                f"name {name!r} starts with a digit, which a Kubernetes Service name may not",
                "start the name with a letter",
            )
        )
    owner_problem = label_value_problem(resource.spec.owner)
    if owner_problem:
        problems.append(
            _problem(workload, "spec.owner", f"owner {owner_problem}", "e.g. ml-platform")
        )
    for key, value in resource.metadata.labels.items():
        found = label_key_problem(key) or label_value_problem(value)
        if found:
            problems.append(_problem(workload, f"metadata.labels.{key}", found))
    if isinstance(resource, App):
        if resource.spec.image is None:
            problems.append(
                _problem(
                    workload,
                    "spec.image",
                    f"App {name!r} has no image, and Kubernetes runs images, not commands",
                    "set spec.image to the container image of this app",
                )
            )
        if resource.spec.scaling.min_replicas == 0:
            problems.append(
                _problem(
                    workload,
                    "spec.scaling.minReplicas",
                    "an App cannot scale to zero on Kubernetes: it exports no request metrics "
                    "to wake it up",
                    "set minReplicas to 1 or more",
                )
            )
    if isinstance(resource, Model):
        try:
            place_artifact(resource, workload.image or "")
            if resource.spec.serve.engine is not None:
                engine_model_path(resource)
        except ArtifactPathProblem as exc:
            problems.append(_problem(workload, exc.field, str(exc)))
    return problems


def collision_problems(workloads: Iterable[Workload]) -> list[Problem]:
    """Resources of different kinds with one name in one namespace would share objects."""
    problems: list[Problem] = []
    first: dict[tuple[str, str], Workload] = {}
    for workload in workloads:
        key = (workload.namespace, workload.name)
        other = first.setdefault(key, workload)
        if other is not workload:
            problems.append(
                _problem(
                    workload,
                    "metadata.name",
                    f"{workload.kind} {workload.name!r} and {other.kind} {other.name!r} "
                    f"(line {other.line}) would own the same objects in namespace "
                    f"{workload.namespace!r}",
                    "give one of them another name",
                )
            )
    for workload in first.values():
        if not uses_inference_pool(workload):
            continue
        picker = picker_name(workload)
        canary_picker = re.compile(re.escape(picker) + f"-[0-9a-f]{{{REVISION_PICKER_DIGITS}}}")
        taken = [
            (picker, "its Service and ServiceAccount with the endpoint picker"),
            (route_name(workload), "its HTTPRoute with the inference route"),
        ]
        taken += [
            (name, "its Service and ServiceAccount with a canary's endpoint picker")
            for namespace, name in first
            if namespace == workload.namespace and canary_picker.fullmatch(name)
        ]
        for name, what in taken:
            clash = first.get((workload.namespace, name))
            if clash is not None:
                problems.append(
                    _problem(
                        clash,
                        "metadata.name",
                        f"{clash.kind} {name!r} would share {what} of Model {workload.name!r} "
                        f"(line {workload.line}), which routes by prefix affinity",
                        f"rename {name!r}, or rename Model {workload.name!r}",
                    )
                )
    return problems

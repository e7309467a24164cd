"""The restricted-profile checks catch each thing the profile forbids (and pass kaip's pods)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kaip.plan import ResolvedResources
from kaip.render.kube import kaip_violations, restricted_violations
from kaip.render.kube.pods import (
    container_resources,
    container_security_context,
    pod_security_context,
    tmp_mount,
    tmp_volume,
)

Pod = dict[str, Any]


def _pod() -> Pod:
    return {
        "securityContext": pod_security_context(),
        "containers": [
            {
                "name": "c",
                "image": "x",
                "resources": container_resources(ResolvedResources("1", "1Gi", 1, None)),
                "securityContext": container_security_context(),
                "volumeMounts": [tmp_mount()],
            }
        ],
        "volumes": [tmp_volume()],
    }


def _container(pod: Pod) -> dict[str, Any]:
    container: dict[str, Any] = pod["containers"][0]
    return container


def test_kaip_pod_parts_pass_both_checks() -> None:
    assert restricted_violations(_pod()) == []
    assert kaip_violations(_pod()) == []


RESTRICTED_BREAKS: dict[str, Callable[[Pod], None]] = {
    "privileged": lambda p: _container(p)["securityContext"].update(privileged=True),
    "escalation": lambda p: _container(p)["securityContext"].update(allowPrivilegeEscalation=True),
    "escalation unset": lambda p: _container(p)["securityContext"].pop("allowPrivilegeEscalation"),
    "root user": lambda p: p["securityContext"].update(runAsUser=0),
    "root allowed": lambda p: (
        p["securityContext"].pop("runAsNonRoot"),
        _container(p)["securityContext"].pop("runAsNonRoot"),
    ),
    "capabilities kept": lambda p: _container(p)["securityContext"].pop("capabilities"),
    "capability added": lambda p: _container(p)["securityContext"]["capabilities"].update(
        add=["SYS_ADMIN"]
    ),
    "seccomp unconfined": lambda p: _container(p)["securityContext"].update(
        seccompProfile={"type": "Unconfined"}
    ),
    "seccomp unset": lambda p: (
        p["securityContext"].pop("seccompProfile"),
        _container(p)["securityContext"].pop("seccompProfile"),
    ),
    "hostPath": lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
    "hostNetwork": lambda p: p.update(hostNetwork=True),
    "hostPort": lambda p: _container(p).update(ports=[{"containerPort": 80, "hostPort": 80}]),
    "init container": lambda p: p.update(initContainers=[{"name": "init", "image": "x"}]),
}


@pytest.mark.parametrize("name", sorted(RESTRICTED_BREAKS))
def test_restricted_profile_violations_are_found(name: str) -> None:
    pod = copy.deepcopy(_pod())
    RESTRICTED_BREAKS[name](pod)
    assert restricted_violations(pod), name


KAIP_BREAKS: dict[str, Callable[[Pod], None]] = {
    "no limits": lambda p: _container(p)["resources"].pop("limits"),
    "limits differ": lambda p: _container(p)["resources"]["limits"].update(cpu="2"),
    "writable root": lambda p: _container(p)["securityContext"].pop("readOnlyRootFilesystem"),
    "no tmp": lambda p: _container(p).update(volumeMounts=[]),
}


@pytest.mark.parametrize("name", sorted(KAIP_BREAKS))
def test_kaip_bar_violations_are_found(name: str) -> None:
    pod = copy.deepcopy(_pod())
    KAIP_BREAKS[name](pod)
    assert kaip_violations(pod), name

"""Checks of a pod spec against the Pod Security "restricted" profile, and kaip's own bar.

:func:`restricted_violations` follows the Pod Security Standards (baseline + restricted, as the
``pod-security.kubernetes.io/enforce=restricted`` admission applies them) for the fields kaip
can render; :func:`kaip_violations` adds what kaip promises on top: requests and limits on
every container, a read-only root filesystem and a writable ``/tmp``. :mod:`kaip.render.kube`
runs both on every pod it renders, so a regression fails rendering, not a cluster apply.

Pure: reads dicts, returns messages.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

ALLOWED_VOLUME_SOURCES: Final = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
ALLOWED_ADDED_CAPABILITIES: Final = frozenset({"NET_BIND_SERVICE"})
ALLOWED_SECCOMP: Final = frozenset({"RuntimeDefault", "Localhost"})


def _containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in pod.get(field) or []:
            yield f"{field}[{container.get('name', '?')}]", container


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """What in ``pod`` (a PodSpec) the restricted Pod Security Standard would reject."""
    problems: list[str] = []
    pod_sc: Mapping[str, Any] = pod.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            problems.append(f"pod: {host} must not be true")
    for volume in pod.get("volumes") or []:
        sources = set(volume) - {"name"}
        if not sources <= ALLOWED_VOLUME_SOURCES:
            problems.append(
                f"volume {volume.get('name')!r}: type {sorted(sources - ALLOWED_VOLUME_SOURCES)} "
                "is not allowed"
            )
    pod_non_root = pod_sc.get("runAsNonRoot")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_non_root is False:
        problems.append("pod: runAsNonRoot must not be false")
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod: runAsUser must not be 0")
    if pod_seccomp is not None and pod_seccomp not in ALLOWED_SECCOMP:
        problems.append(f"pod: seccompProfile {pod_seccomp!r} is not allowed")
    if pod_sc.get("sysctls"):
        problems.append("pod: sysctls are not rendered by kaip and not checked here")
    for where, container in _containers(pod):
        sc: Mapping[str, Any] = container.get("securityContext") or {}
        if sc.get("privileged"):
            problems.append(f"{where}: privileged must not be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and pod_non_root is not True):
            problems.append(f"{where}: runAsNonRoot must be true (here or on the pod)")
        if sc.get("runAsUser") == 0:
            problems.append(f"{where}: runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is None and pod_seccomp is None:
            problems.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost")
        elif seccomp is not None and seccomp not in ALLOWED_SECCOMP:
            problems.append(f"{where}: seccompProfile {seccomp!r} is not allowed")
        capabilities: Mapping[str, Any] = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{where}: capabilities must drop ALL")
        added = set(capabilities.get("add") or []) - ALLOWED_ADDED_CAPABILITIES
        if added:
            problems.append(f"{where}: capabilities {sorted(added)} must not be added")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"{where}: hostPort must not be set")
        if sc.get("procMount") not in (None, "Default"):
            problems.append(f"{where}: procMount must be Default")
    return problems


def kaip_violations(pod: Mapping[str, Any]) -> list[str]:
    """What in ``pod`` falls short of kaip's bar beyond the restricted profile."""
    problems: list[str] = []
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    for where, container in _containers(pod):
        resources: Mapping[str, Any] = container.get("resources") or {}
        for part in ("requests", "limits"):
            amounts = resources.get(part) or {}
            missing = {"cpu", "memory"} - set(amounts)
            if missing:
                problems.append(f"{where}: {part} lack {sorted(missing)}")
        if resources.get("requests") != resources.get("limits"):
            problems.append(f"{where}: requests and limits differ")
        sc: Mapping[str, Any] = container.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem must be true")
        tmp = [m for m in container.get("volumeMounts") or [] if m.get("mountPath") == "/tmp"]
        if not tmp or "emptyDir" not in volumes.get(tmp[0].get("name"), {}):
            problems.append(f"{where}: /tmp must be an emptyDir mount")
    return problems

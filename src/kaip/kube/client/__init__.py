"""The only module that talks to Kubernetes: connect with a kubeconfig, server-side apply a set
of manifests with field manager ``kaip``, prune what left the set, delete, and wait for
readiness. Every failure is a :class:`~kaip.errors.KubeError` with an actionable message.

Manifests are plain ``dict`` objects (what :mod:`kaip.render` produces); nothing here renders.

::

    with Session.connect(kubeconfig, context) as session:
        result = apply(session, manifests, part_of="quickstart", prune=True)
        wait_ready(session, [c.ref for c in result.changes], timeout=300)
        print(result.summary())   # "2 created, 1 unchanged, 1 pruned"
"""

from kaip.kube.client.apply import FIELD_MANAGER, apply, delete, wait_ready
from kaip.kube.client.objects import (
    MANAGED_BY_LABEL,
    PART_OF_LABEL,
    Change,
    Manifest,
    ObjectRef,
    Outcome,
    Result,
)
from kaip.kube.client.served import check_served_names
from kaip.kube.client.session import Credentials, Session

__all__ = [
    "FIELD_MANAGER",
    "MANAGED_BY_LABEL",
    "PART_OF_LABEL",
    "Change",
    "Credentials",
    "Manifest",
    "ObjectRef",
    "Outcome",
    "Result",
    "Session",
    "apply",
    "check_served_names",
    "delete",
    "wait_ready",
]

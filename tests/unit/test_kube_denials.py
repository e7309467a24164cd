"""A 403 from RBAC is a permanent KubeForbiddenError; a 403 from admission is retryable.

The bodies are the ``Status`` objects kube-apiserver 1.35 sends (``responsewriters.Forbidden``
for the authorizer, ``validating.dispatcher`` for a ValidatingAdmissionPolicy, the webhook
dispatcher, the ResourceQuota plugin).
"""

from __future__ import annotations

import json

import pytest

from kaip.errors import KubeForbiddenError
from kaip.kube.client.session import Session, authorization_denied


def status(message: str, **details: object) -> bytes:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": "Forbidden",
        "details": {"name": "web", "group": "apps", "kind": "deployments", **details},
        "code": 403,
    }
    return json.dumps(body).encode()


RBAC = status(
    'deployments.apps "web" is forbidden: User "system:serviceaccount:kaip-system:kaip-operator" '
    'cannot patch resource "deployments" in API group "apps" in the namespace "ml"'
)
VAP_MESSAGE = (
    "ValidatingAdmissionPolicy 'freeze' with binding 'freeze' denied request: frozen for "
    'maintenance: User "x" cannot patch resource "deployments" today'  # the policy's words
)
VAP = status(
    f'deployments.apps "web" is forbidden: {VAP_MESSAGE}', causes=[{"message": VAP_MESSAGE}]
)
WEBHOOK = status('admission webhook "policy.example.com" denied the request: no')
QUOTA = status('deployments.apps "web" is forbidden: exceeded quota: q, requested: count/x=1')
NON_RESOURCE = status('forbidden: User "bob" cannot get path "/metrics"')


@pytest.mark.parametrize(
    ("body", "rbac"),
    [(RBAC, True), (NON_RESOURCE, True), (b"Forbidden", True),
     (VAP, False), (WEBHOOK, False), (QUOTA, False)],
)  # fmt: skip
def test_only_the_authorizers_403_is_an_rbac_denial(body: bytes, rbac: bool) -> None:
    assert authorization_denied(body) is rbac


def test_an_admission_403_is_a_plain_kube_error_with_the_servers_message() -> None:
    session = Session(None, server="https://k8s.example.com", context="c", namespace="ml")
    denied = session._api_error(403, VAP, "apply deployment.apps/web")
    assert not isinstance(denied, KubeForbiddenError)
    assert denied.message == (
        f'cannot apply deployment.apps/web: deployments.apps "web" is forbidden: {VAP_MESSAGE} '
        "(403)"
    )
    assert isinstance(session._api_error(403, RBAC, "apply"), KubeForbiddenError)

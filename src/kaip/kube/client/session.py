"""A connection to one Kubernetes API server: kubeconfig, requests, discovery, error mapping.

The only place kaip sends a request to Kubernetes. It uses the official ``kubernetes`` client
for kubeconfig handling (tokens, client certificates, exec plugins) and HTTP, and turns every
failure into one :class:`~kaip.errors.KubeError` with a message a user can act on:

* unreachable server or TLS failure -> :class:`~kaip.errors.KubeUnreachableError`;
* missing or broken kubeconfig, unknown context, rejected credentials ->
  :class:`~kaip.errors.KubeConfigError`;
* RBAC denial -> :class:`~kaip.errors.KubeForbiddenError`; a 403 from admission (a
  ValidatingAdmissionPolicy, a webhook, a quota) is a plain :class:`~kaip.errors.KubeError`: it
  says no to this object now, not to this identity (see :func:`authorization_denied`).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaip.errors import KubeConfigError, KubeError, KubeForbiddenError, KubeUnreachableError
from kaip.kube.client.objects import Manifest

try:
    import urllib3
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    _MISSING_CLIENT = ""
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    _MISSING_CLIENT = str(exc)

_JSON = "application/json"
APPLY_PATCH = "application/apply-patch+yaml"
REDISCOVER_AFTER = 30.0
"""Seconds before a kind the server did not serve is looked up again (see Session.resource)."""
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Resource:
    """How the API serves one kind: its URL segment and whether it lives in a namespace."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class Credentials:
    """How a session authenticates, so another client (the operator's kopf) can use the same."""

    server: str
    ca_file: str | None
    token: str | None
    cert_file: str | None
    key_file: str | None
    insecure: bool


class Session:
    """One API server, as one kubeconfig context (or a pod's service account) sees it."""

    def __init__(
        self,
        api: Any,
        *,
        server: str,
        context: str,
        namespace: str,
        timeout: tuple[float, float] = (5.0, 30.0),
    ) -> None:
        self._api = api
        self.server = server
        self.context = context
        self.namespace = namespace
        self._timeout = timeout
        self._resources: dict[str, dict[str, Resource] | None] = {}
        self._asked_missing: dict[tuple[str, str], float] = {}
        """(apiVersion, kind) not served when last asked -> when (monotonic seconds)."""
        self.rediscover_after = REDISCOVER_AFTER
        """Seconds before a kind found missing is asked about again (the operator's
        ``--rediscover``)."""
        self.user_agent = "kaip"
        """Sent with every request: audit logs tell two operator replicas apart by it."""
        self.write_guard: Callable[[], None] | None = None
        """Called before every request that is not a read; it raises to stop the write (the
        operator's leader election fences a replica that no longer surely leads)."""

    @classmethod
    def connect(cls, kubeconfig: Path | str | None = None, context: str | None = None) -> Session:
        """Load ``kubeconfig`` (default: ``$KUBECONFIG`` or ``~/.kube/config``) and ``context``.

        Raises :class:`KubeConfigError` for a missing file, bad YAML or an unknown context.
        """
        if _MISSING_CLIENT:
            raise KubeConfigError(
                f"talking to Kubernetes needs the kubernetes client ({_MISSING_CLIENT}): "
                "pip install 'kaip[kube]'"
            )
        config_file = str(kubeconfig) if kubeconfig else None
        where = config_file or "the default kubeconfig ($KUBECONFIG or ~/.kube/config)"
        if config_file and ":" not in config_file and not Path(config_file).is_file():
            raise KubeConfigError(f"kubeconfig {config_file} does not exist")
        configuration = k8s.Configuration()
        try:
            contexts, active = k8s_config.list_kube_config_contexts(config_file)  # type: ignore[no-untyped-call]
            chosen = (
                next((c for c in contexts if c["name"] == context), None) if context else active
            )
            if chosen is None:
                names = ", ".join(sorted(c["name"] for c in contexts)) or "none"
                raise KubeConfigError(f"context {context!r} is not in {where} (contexts: {names})")
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=config_file,
                context=chosen["name"],
                client_configuration=configuration,
                persist_config=False,
            )
        except KubeConfigError:
            raise
        except Exception as exc:  # ConfigException, OSError, yaml errors, KeyError in bad files
            raise KubeConfigError(f"cannot use {where}: {_one_line(exc)}") from None
        # Fail fast on a dead server instead of urllib3's silent retries.
        configuration.retries = 0
        namespace = (chosen.get("context") or {}).get("namespace") or "default"
        return cls(
            k8s.ApiClient(configuration),
            server=str(configuration.host),
            context=str(chosen["name"]),
            namespace=str(namespace),
        )

    @staticmethod
    def in_cluster_available() -> bool:
        """True inside a pod that mounts a service account token."""
        return (
            bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
            and (SERVICE_ACCOUNT_DIR / "token").is_file()
        )

    @classmethod
    def in_cluster(cls) -> Session:
        """The pod's service account (its token is re-read as it rotates)."""
        if _MISSING_CLIENT:
            raise KubeConfigError(
                f"talking to Kubernetes needs the kubernetes client ({_MISSING_CLIENT}): "
                "pip install 'kaip[kube]'"
            )
        configuration = k8s.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            namespace = (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip() or "default"
        except Exception as exc:  # ConfigException, OSError
            raise KubeConfigError(
                f"cannot use the pod's service account: {_one_line(exc)}"
            ) from None
        configuration.retries = 0
        return cls(
            k8s.ApiClient(configuration),
            server=str(configuration.host),
            context="in-cluster",
            namespace=namespace,
        )

    def credentials(self) -> Credentials:
        """The server and credentials this session uses now (a rotated token included)."""
        configuration = self._api.configuration
        header = configuration.get_api_key_with_prefix("BearerToken", alias="authorization") or ""
        # The in-cluster loader writes "bearer <token>", the kubeconfig loader "Bearer <token>".
        scheme, _, rest = header.partition(" ")
        token = rest if scheme.lower() == "bearer" and rest else header or None
        return Credentials(
            server=str(configuration.host),
            ca_file=configuration.ssl_ca_cert or None,
            token=token,
            cert_file=configuration.cert_file or None,
            key_file=configuration.key_file or None,
            insecure=not configuration.verify_ssl,
        )

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- requests --

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Manifest | None = None,
        content_type: str = _JSON,
        what: str = "",
        missing_ok: bool = False,
    ) -> Manifest | None:
        """Send one request; the decoded JSON answer, or None for a 404 when ``missing_ok``."""
        data = self._send(method, path, query, body, content_type, _JSON, what, missing_ok)
        if data is None:
            return None
        return json.loads(data) if data else {}

    def text(self, path: str, *, query: dict[str, str] | None = None, what: str = "") -> str:
        """GET a plain-text answer (a pod's log), decoded leniently; the server bounds its
        size through the query (``limitBytes``)."""
        data = self._send("GET", path, query, None, _JSON, "text/plain, */*", what, False)
        return (data or b"").decode(errors="replace")

    def _send(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: Manifest | None,
        content_type: str,
        accept: str,
        what: str,
        missing_ok: bool,
    ) -> bytes | None:
        # The client's own call_api changed shape between releases; its configured urllib3 pool
        # (TLS, client certificates, proxy) and token hook (exec plugins refresh) did not.
        if method != "GET" and self.write_guard is not None:
            self.write_guard()
        configuration = self._api.configuration
        headers = {"Accept": accept, "User-Agent": self.user_agent}
        if body is not None:
            headers["Content-Type"] = content_type
        # The kubeconfig loader files the token as "BearerToken" (new) or "authorization" (old).
        token = configuration.get_api_key_with_prefix(
            "BearerToken"
        ) or configuration.get_api_key_with_prefix("authorization")
        if token:
            headers["Authorization"] = token
        url = f"{self.server}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        try:
            response = self._api.rest_client.pool_manager.request(
                method,
                url,
                body=json.dumps(body) if body is not None else None,
                headers=headers,
                timeout=urllib3.Timeout(connect=self._timeout[0], read=self._timeout[1]),
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status == 404 and missing_ok:
            return None
        if not 200 <= response.status < 300:
            raise self._api_error(response.status, response.data, what or f"{method} {path}")
        return bytes(response.data)

    def get(self, path: str, what: str = "", missing_ok: bool = False) -> Manifest | None:
        return self.request("GET", path, what=what, missing_ok=missing_ok)

    def version(self) -> str:
        """The server's gitVersion; the cheapest proof that it answers."""
        answer = self.get("/version", what="read the server version") or {}
        return str(answer.get("gitVersion", "unknown"))

    # -- discovery --

    def resource(self, api_version: str, kind: str, *, fresh: bool = False) -> Resource | None:
        """How ``kind`` is served, or None when the server does not serve it.

        A kind missing from the cached answer is asked for again (its CRD may have been applied
        a moment ago), but at most once per :attr:`rediscover_after` seconds unless ``fresh``:
        a long-running caller (the operator) must not ask about an absent KEDA on every pass.
        """
        found = self._served(api_version)
        if found is None or kind not in found:
            key = (api_version, kind)
            asked = self._asked_missing.get(key)
            if fresh or asked is None or time.monotonic() - asked >= self.rediscover_after:
                self._resources.pop(api_version, None)
                found = self._served(api_version)
                self._asked_missing[key] = time.monotonic()
        resource = None if found is None else found.get(kind)
        if resource is not None:
            self._asked_missing.pop((api_version, kind), None)
        return resource

    def _served(self, api_version: str) -> dict[str, Resource] | None:
        if api_version not in self._resources:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            answer = self.get(path, what=f"discover {api_version}", missing_ok=True)
            self._resources[api_version] = (
                None
                if answer is None
                else {
                    r["kind"]: Resource(api_version, r["kind"], r["name"], bool(r["namespaced"]))
                    for r in answer.get("resources", [])
                    if "/" not in r["name"]  # subresources such as deployments/status
                }
            )
        return self._resources[api_version]

    # -- errors --

    def _api_error(self, status: int, body: bytes, what: str) -> KubeError:
        message = _status_message(status, body)
        if status == 401:
            return KubeConfigError(
                f"the API server at {self.server} rejected the credentials of context "
                f"{self.context!r} (401 Unauthorized): the token or certificate in the kubeconfig "
                "is wrong or expired"
            )
        if status == 403 and authorization_denied(body):
            return KubeForbiddenError(
                f"forbidden: cannot {what}: {message}. Ask a cluster admin for a Role that "
                "allows it, or use another --context"
            )
        missing_namespace = re.fullmatch(r'namespaces "([^"]+)" not found', message)
        if status == 404 and missing_namespace:
            return KubeError(
                f"cannot {what}: namespace {missing_namespace[1]} does not exist; create it "
                f"first (kubectl create namespace {missing_namespace[1]}) or pick another "
                "--namespace"
            )
        if status == 409:
            return KubeError(
                f"conflict: cannot {what}: {message}. Another field manager owns these fields; "
                "re-run with --force-conflicts to take them over"
            )
        return KubeError(f"cannot {what}: {message} ({status})")

    def _transport_error(self, exc: Exception) -> KubeError:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, urllib3.exceptions.SSLError):
            return KubeUnreachableError(
                f"TLS with the API server at {self.server} failed: {_one_line(reason)}; check "
                f"the certificate-authority of context {self.context!r}"
            )
        return KubeUnreachableError(
            f"cannot reach the Kubernetes API server at {self.server} (context "
            f"{self.context!r}): {_one_line(reason)}. Is the cluster running, and is the "
            "kubeconfig's server address right?"
        )


# The authorizer's words (k8s.io/apiserver responsewriters.forbiddenMessage), after the
# "<resource> \"<name>\" is forbidden: " that apierrors.NewForbidden puts first.
_AUTHORIZER_DENIAL = re.compile(r'(^|: )User "[^"]*" cannot [a-z]+ (resource|path) "')


def authorization_denied(body: bytes) -> bool:
    """Whether a 403 answer is the authorizer's (RBAC) rather than admission's.

    Both are ``Status`` objects with reason ``Forbidden``. The authorizer's message always says
    ``User "..." cannot VERB resource|path "..."`` and carries no ``details.causes``; a
    ValidatingAdmissionPolicy that denies with reason ``Forbidden`` adds its message as a cause,
    and webhooks, quotas and namespace lifecycle word their messages otherwise.
    """
    try:
        status = json.loads(body)
    except (TypeError, ValueError):
        return True  # not a Status: nothing says it was admission
    if not isinstance(status, dict):
        return True
    details = status.get("details")
    if isinstance(details, dict) and details.get("causes"):
        return False
    return bool(_AUTHORIZER_DENIAL.search(str(status.get("message") or "")))


def _status_message(code: int, body: bytes) -> str:
    """The ``message`` of the Status the server sent, else the HTTP status line."""
    try:
        status = json.loads(body)
    except (TypeError, ValueError):
        status = None
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    text = body.decode(errors="replace").strip()
    return text[:200] if text else f"HTTP {code}"


def _one_line(exc: BaseException | object) -> str:
    lines = str(exc).strip().splitlines()
    # urllib3 prefixes the connection object's repr: "<...HTTPSConnection object at 0x..>: ..."
    return re.sub(r"^<[^>]*>: ", "", lines[0]) if lines else type(exc).__name__

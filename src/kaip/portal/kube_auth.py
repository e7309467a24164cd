"""Who may use the portal on a cluster: Kubernetes users, by TokenReview and SubjectAccessReview.

No kaip token exists on a cluster: a request's ``Authorization: Bearer`` token (or the portal
session it opened) is a Kubernetes credential, and RBAC stays the source of truth.
:meth:`KubeReviews.authenticate` asks the apiserver's TokenReview who the token belongs to
(none: 401), then a SubjectAccessReview whether that user may ``list`` Models where the portal
looks (not: 403, naming the user and what it lacks); :meth:`KubeReviews.authorize` asks, for
each action, whether the user may ``patch`` that very resource, the verb ``kaip rollout
promote|abort|undo`` needs (not: 403). Answers are remembered for :data:`REMEMBER_S` per token
(by its SHA-256, in memory only; never the token itself) or per user and question, at most
:data:`MAX_REMEMBERED` of each, so a page load costs one review, not one per request. Reviews
are blocking requests and run in a worker thread. Tokens are never logged or shown.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kaip.errors import ForbiddenError
from kaip.kube.client import Session
from kaip.local.controller.auth import Role, bearer_token

REMEMBER_S = 30.0
MAX_REMEMBERED = 1024
GROUP = "kaip.dev"


@dataclass(frozen=True)
class KubeUser:
    """A Kubernetes user, as TokenReview describes it; a portal principal."""

    name: str
    """How the portal names it (``… (portal session)`` for a session)."""
    user: str
    """The username RBAC knows it by."""
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    role: Role = "viewer"
    """Not used on a cluster: each action is a SubjectAccessReview."""
    owners: tuple[str, ...] = ()
    credential: str = field(default="", compare=False)


@dataclass
class _Memory:
    """Answers by key, each for :data:`REMEMBER_S`, at most :data:`MAX_REMEMBERED`."""

    clock: Callable[[], float]
    answers: dict[Any, tuple[Any, float]] = field(default_factory=dict)

    def get(self, key: Any) -> tuple[bool, Any]:
        found = self.answers.get(key)
        if found is None or found[1] <= self.clock():
            return False, None
        return True, found[0]

    def put(self, key: Any, value: Any) -> None:
        if len(self.answers) >= MAX_REMEMBERED:
            self.answers.clear()
        self.answers[key] = (value, self.clock() + REMEMBER_S)


class KubeReviews:
    """TokenReview and SubjectAccessReview through the portal's own Kubernetes session."""

    def __init__(
        self,
        session: Session,
        namespace: str | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._namespace = namespace
        """Where the portal looks (None: every namespace)."""
        self._tokens = _Memory(clock)
        self._access = _Memory(clock)

    async def authenticate(self, headers: Mapping[str, str]) -> KubeUser | None:
        """The user of the request's bearer token when it may list Models here; None when the
        token is missing or not valid; :class:`ForbiddenError` when the user may not read."""
        token = bearer_token(headers)
        if token is None or len(token) > 16384:
            return None
        key = hashlib.sha256(token.encode("utf-8", errors="replace")).digest()
        known, user = self._tokens.get(key)
        if not known:
            user = await asyncio.to_thread(self._token_review, token)
            self._tokens.put(key, user)
        if user is None:
            return None
        assert isinstance(user, KubeUser)
        where = f"namespace {self._namespace}" if self._namespace else "every namespace"
        await self.authorize(user, "list", "models", self._namespace or "", "", f"read {where}")
        return user

    async def authorize(
        self, user: KubeUser, verb: str, resource: str, namespace: str, name: str, what: str
    ) -> None:
        """Nothing when RBAC lets ``user`` ``verb`` the resource; else :class:`ForbiddenError`."""
        key = (user.user, user.groups, verb, resource, namespace, name)
        known, allowed = self._access.get(key)
        if not known:
            allowed = await asyncio.to_thread(
                self._access_review, user, verb, resource, namespace, name
            )
            self._access.put(key, allowed)
        if not allowed:
            target = f"{resource}.{GROUP}/{name}" if name else f"{resource}.{GROUP}"
            scope = f"in namespace {namespace}" if namespace else "in every namespace"
            raise ForbiddenError(
                f"{user.user} may not {what}: RBAC does not let it {verb} {target} {scope} "
                "(ask for a Role that does)"
            )

    def _token_review(self, token: str) -> KubeUser | None:
        answer = self._session.request(
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token},
            },
            what="review a portal user's token (TokenReview)",
        )
        status = (answer or {}).get("status") or {}
        if not status.get("authenticated"):
            return None
        found = status.get("user") or {}
        username = str(found.get("username", ""))
        if not username:
            return None
        extra = found.get("extra") or {}
        return KubeUser(
            name=username,
            user=username,
            groups=tuple(str(g) for g in found.get("groups") or ()),
            uid=str(found.get("uid", "")),
            extra=tuple(sorted((str(k), tuple(map(str, v))) for k, v in extra.items())),
        )

    def _access_review(
        self, user: KubeUser, verb: str, resource: str, namespace: str, name: str
    ) -> bool:
        attributes = {"group": GROUP, "resource": resource, "verb": verb}
        if namespace:
            attributes["namespace"] = namespace
        if name:
            attributes["name"] = name
        spec: dict[str, Any] = {
            "user": user.user,
            "groups": list(user.groups),
            "resourceAttributes": attributes,
        }
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra}
        answer = self._session.request(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": spec,
            },
            what=f"ask whether {user.user} may {verb} {resource} (SubjectAccessReview)",
        )
        return bool(((answer or {}).get("status") or {}).get("allowed"))

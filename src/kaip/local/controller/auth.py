"""Who is asking the control API: credentials in, a :class:`Principal` (name and role) out.

Roles are ordered, each allowing what the one before it does: ``viewer`` reads state,
``deployer`` also deploys, promotes and aborts, ``admin`` may do everything. A route says the
least role it needs (:func:`require`); handlers see only the principal, never a credential, so
new kinds of credential change nothing downstream.

Credentials: the random token ``kaip up`` writes to ``.kaip/admin.token`` for each run, sent as
``Authorization: Bearer <token>`` and compared in constant time (the ``admin`` principal); role
tokens from ``kaip token create`` (:mod:`~kaip.local.controller.tokens`, kept hashed), which may
be scoped to owners (:func:`require_owner`); and the portal's cookie sessions, chained with
:class:`FirstOf`. A cookie alone is
never a credential here: an App on the traffic port shares the host, so it can set cookies this
port receives. Never does I/O and never decides what a request may do beyond the role check.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from kaip.errors import ForbiddenError

Role = Literal["viewer", "deployer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "deployer", "admin")
"""Least to most allowed."""


class Principal(Protocol):
    """Who a request comes from, as far as the control API is concerned."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> Role: ...

    @property
    def owners(self) -> tuple[str, ...]:
        """The owners a deployer may act for; empty: every owner."""
        ...

    @property
    def credential(self) -> str:
        """The id of the revocable credential behind it (a role token's), or ""."""
        ...


@dataclass(frozen=True)
class Identity:
    """A plain :class:`Principal`."""

    name: str
    role: Role
    owners: tuple[str, ...] = ()
    credential: str = field(default="", compare=False)


class Authenticator(Protocol):
    """Turns a request's headers (names matched case-insensitively) into a principal, or None."""

    def authenticate(self, headers: Mapping[str, str]) -> Principal | None: ...


def allows(principal: Principal, needed: Role) -> bool:
    return ROLES.index(principal.role) >= ROLES.index(needed)


def require(principal: Principal | None, needed: Role, action: str) -> Principal:
    """``principal`` if its role allows ``action``; else :class:`~kaip.errors.ForbiddenError`."""
    if principal is None or not allows(principal, needed):
        who = "this request" if principal is None else f"{principal.name} ({principal.role})"
        raise ForbiddenError(f"{who} may not {action}: that needs the {needed} role or above")
    return principal


def require_owner(principal: Principal, owner: str, action: str) -> None:
    """Refuses (403) a deployer scoped to other owners acting on ``owner``'s resource."""
    if principal.role != "admin" and principal.owners and owner not in principal.owners:
        raise ForbiddenError(
            f"{principal.name} ({principal.role} for {', '.join(principal.owners)}) may not "
            f"{action}: it belongs to {owner or 'no owner'}"
        )


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class TokenAuthenticator:
    """Bearer tokens, each standing for one principal; compared in constant time."""

    def __init__(self, tokens: Mapping[str, Principal]) -> None:
        self._tokens = [(token.encode(), principal) for token, principal in tokens.items()]

    def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        offered = bearer_token(headers)
        if offered is None:
            return None
        raw = offered.encode("utf-8", errors="replace")
        found: Principal | None = None
        for token, principal in self._tokens:  # every token is compared: no early exit
            if hmac.compare_digest(raw, token):
                found = principal
        return found


class FirstOf:
    """The first principal any of ``authenticators`` finds."""

    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        self._authenticators = tuple(authenticators)

    def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        for authenticator in self._authenticators:
            principal = authenticator.authenticate(headers)
            if principal is not None:
                return principal
        return None


def admin_token_authenticator(token: str) -> TokenAuthenticator:
    """The one credential of a ``kaip up`` run: its admin token."""
    return TokenAuthenticator({token: Identity("local-admin", "admin")})

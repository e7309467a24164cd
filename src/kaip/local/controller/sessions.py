"""The portal's browser sessions: a random id in an ``HttpOnly`` cookie, held in memory only.

A browser cannot send ``Authorization: Bearer``, so the portal's login form takes a token that
a bearer :class:`~kaip.local.controller.auth.Authenticator` accepts and opens a session: 32
random bytes (``secrets``), kept in this process for :data:`SESSION_TTL_S`, at most
:data:`MAX_SESSIONS` at once (the oldest goes first), gone when ``kaip up`` stops. The cookie is
``HttpOnly; SameSite=Strict; Path=/``. A session has the role (and owners) of the token that
opened it, and only the portal's pages read it: the admin API under ``/_kaip/`` never looks at
cookies (an App on the traffic port shares the host and may set or receive cookies for it).
A session ends with the role token that opened it (``revoked``: ``kaip token revoke``).
Each session has its own CSRF token, which every portal form that acts (log out, promote,
abort) must carry besides passing the Origin check, so a cookie alone changes nothing. Never
does I/O and never logs a token or a session id.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, is_dataclass, replace
from http.cookies import CookieError, SimpleCookie
from typing import cast

from kaip.local.controller.auth import Identity, Principal
from kaip.local.gateway.http1 import PORTAL_COOKIE

COOKIE = PORTAL_COOKIE
SESSION_TTL_S = 12 * 3600.0
MAX_SESSIONS = 256


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    expires_at: float


def session_id(headers: Mapping[str, str]) -> str | None:
    """The portal's session id in a request's ``Cookie`` header, if any."""
    raw = headers.get("cookie", "")
    if not raw or len(raw) > 8192:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def _in_session(principal: Principal) -> Principal:
    """``principal``, named as acting through a portal session; a dataclass keeps its other
    fields (a cluster user's groups, a role token's id)."""
    name = f"{principal.name} (portal session)"
    if is_dataclass(principal) and not isinstance(principal, type):
        return cast(Principal, replace(principal, name=name))
    return Identity(name, principal.role, principal.owners, credential=principal.credential)


class SessionStore:
    """Open sessions by id; an :class:`~kaip.local.controller.auth.Authenticator` of cookies."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        revoked: Callable[[Principal], bool] = lambda _: False,
    ) -> None:
        self._clock = clock
        self._revoked = revoked
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def open(self, principal: Principal) -> tuple[str, Session]:
        """A new session for whoever logged in, with that token's role and owners; returns its id
        and itself."""
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.popitem(last=False)
        sid = secrets.token_urlsafe(32)
        session = Session(
            _in_session(principal),
            secrets.token_urlsafe(32),
            self._clock() + SESSION_TTL_S,
        )
        self._sessions[sid] = session
        return sid, session

    def find(self, headers: Mapping[str, str]) -> Session | None:
        sid = session_id(headers)
        if sid is None:
            return None
        offered = sid.encode("utf-8", errors="replace")
        found: tuple[str, Session] | None = None
        for known, session in self._sessions.items():  # constant time per id, no early exit
            if hmac.compare_digest(offered, known.encode()):
                found = (known, session)
        if found is None:
            return None
        if found[1].expires_at <= self._clock() or self._revoked(found[1].principal):
            del self._sessions[found[0]]
            return None
        return found[1]

    def close(self, headers: Mapping[str, str]) -> None:
        sid = session_id(headers)
        if sid is not None and self.find(headers) is not None:
            self._sessions.pop(sid, None)

    def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        session = self.find(headers)
        return session.principal if session is not None else None


def csrf_matches(session: Session, offered: str) -> bool:
    return hmac.compare_digest(session.csrf.encode(), offered.encode("utf-8", errors="replace"))

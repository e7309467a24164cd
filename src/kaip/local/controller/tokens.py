"""Role tokens: ``kaip token create --role R [--owner TEAM]`` makes them, ``kaip up`` accepts them.

A token is ``kaip_<id>_<secret>``: ``id`` (12 hex digits) names its record, ``secret`` is 32
random bytes (``secrets``). Only the record is kept, in ``.kaip/tokens.json`` (0600, written
whole and renamed, :func:`~kaip.local.private.write_private`): the id, a name, the role
(viewer, deployer or admin), the owners a deployer may act for (none: every owner), when it
was made, and ``scrypt(secret, salt)`` with a random salt. The token itself is shown once, by
the command that made it, and is never written, logged or shown again.

:class:`RoleTokenAuthenticator` reads the file again whenever it changes (a token made while
``kaip up`` runs works at once) and checks a presented token by its record's scrypt, compared in
constant time; a token it has checked is remembered (by its SHA-256, in memory only) for
:data:`REMEMBER_S`, so a page load costs one scrypt, not one per request. ``kaip token revoke``
(:func:`revoke_token`) rewrites the file without the record: the changed file is read again at
the next request, which forgets every remembered token, so a revoked token is refused at once,
and so are the portal sessions it opened (:meth:`RoleTokenAuthenticator.revoked`). The scrypt
cost is kept small (:data:`SCRYPT_N`): the secret has 256 random bits, so the hash guards a stolen
file, not a guessable password, and the check runs on the control port's event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kaip.errors import ConfigError
from kaip.local.controller.auth import ROLES, Identity, Principal, Role, bearer_token
from kaip.local.private import private_dir, write_private

TOKENS_FILE = "tokens.json"
SCRYPT_N = 2**11
SCRYPT_R = 8
REMEMBER_S = 300.0
MAX_TOKENS = 1000
_TOKEN = re.compile(r"kaip_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@ -]{0,62}")


@dataclass(frozen=True)
class TokenRecord:
    """What is kept of a token: never the token itself."""

    id: str
    name: str
    role: Role
    owners: tuple[str, ...]
    created_at: float
    salt: str
    hash: str

    def principal(self) -> Identity:
        return Identity(self.name, self.role, self.owners, credential=self.id)


def _digest(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=1, dklen=32)


def read_tokens(state_dir: Path) -> list[TokenRecord]:
    """The token records under ``state_dir`` (none when there is no file yet)."""
    path = state_dir / TOKENS_FILE
    try:
        raw = json.loads(path.read_text())
        return [
            TokenRecord(**{**entry, "owners": tuple(entry["owners"])}) for entry in raw["tokens"]
        ]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a token file kaip wrote ({exc}): move it away and create tokens again"
        ) from None


def create_token(
    state_dir: Path,
    role: str,
    owners: Sequence[str] = (),
    name: str = "",
    clock: Callable[[], float] = time.time,
) -> tuple[str, TokenRecord]:
    """A new token of ``role`` (for ``owners``), recorded hashed; returns it and its record."""
    if role not in ROLES:
        raise ConfigError(f"--role {role!r}: give one of {', '.join(ROLES)}")
    for owner in owners:
        if not 0 < len(owner) <= 253:
            raise ConfigError(f"--owner {owner[:40]!r}: give an owner of 1 to 253 characters")
    records = read_tokens(state_dir)
    if len(records) >= MAX_TOKENS:
        raise ConfigError(f"{state_dir / TOKENS_FILE} holds {MAX_TOKENS} tokens, the most it may")
    token_id = secrets.token_hex(6)
    name = name or f"{role}-{token_id}"
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"--name {name[:40]!r}: letters, digits, '.', '_', '@', '-' and spaces, at most 63"
        )
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    record = TokenRecord(
        token_id, name, role, tuple(owners), clock(), salt.hex(), _digest(secret, salt).hex()
    )
    private_dir(state_dir)
    body = {"tokens": [asdict(r) for r in [*records, record]]}
    write_private(state_dir / TOKENS_FILE, json.dumps(body, indent=1) + "\n")
    return f"kaip_{token_id}_{secret}", record


def revoke_token(state_dir: Path, which: str) -> TokenRecord:
    """Removes the token whose id or name is ``which`` and returns its record; a running
    ``kaip up`` refuses it (and the portal sessions it opened) from its next request on."""
    records = read_tokens(state_dir)
    by_id = [r for r in records if r.id == which]
    chosen = by_id or [r for r in records if r.name == which]
    if not chosen:
        known = ", ".join(f"{r.name} ({r.id})" for r in records[:20]) or "none"
        raise ConfigError(
            f"no token has the id or name {which[:70]!r} in {state_dir / TOKENS_FILE} "
            f"(known: {known}); `kaip token list` shows them"
        )
    if len(chosen) > 1:
        ids = ", ".join(r.id for r in chosen)
        raise ConfigError(f"{len(chosen)} tokens are named {which!r} (ids {ids}): revoke by id")
    (record,) = chosen
    body = {"tokens": [asdict(r) for r in records if r.id != record.id]}
    write_private(state_dir / TOKENS_FILE, json.dumps(body, indent=1) + "\n")
    return record


@dataclass
class RoleTokenAuthenticator:
    """Bearer role tokens checked against ``state_dir``'s token file (re-read when it changes)."""

    state_dir: Path
    clock: Callable[[], float] = time.monotonic
    _records: dict[str, TokenRecord] = field(default_factory=dict)
    _seen: tuple[int, int, int] | None = None
    _checked: dict[bytes, tuple[Principal, float]] = field(default_factory=dict)

    def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        token = bearer_token(headers)
        if token is None:
            return None
        return self.check(token)

    def check(self, token: str) -> Principal | None:
        """The principal of ``token``, or None when it is not a live token of this file."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        self._reload()
        record = self._records.get(match.group(1))
        if record is None:
            return None
        key = hashlib.sha256(token.encode()).digest()
        now = self.clock()
        remembered = self._checked.get(key)
        if remembered is not None and remembered[1] > now:
            return remembered[0]
        digest = _digest(match.group(2), bytes.fromhex(record.salt))
        if not hmac.compare_digest(digest, bytes.fromhex(record.hash)):
            return None
        if len(self._checked) >= MAX_TOKENS:
            self._checked.clear()
        principal = record.principal()
        self._checked[key] = (principal, now + REMEMBER_S)
        return principal

    def revoked(self, principal: Principal) -> bool:
        """Whether ``principal`` came from a token of this file that is there no more."""
        if not principal.credential:
            return False
        self._reload()
        return principal.credential not in self._records

    def _reload(self) -> None:
        try:
            stat = os.stat(self.state_dir / TOKENS_FILE)
        except FileNotFoundError:
            self._records, self._seen, self._checked = {}, None, {}
            return
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return
        try:
            self._records = {r.id: r for r in read_tokens(self.state_dir)}
        except ConfigError:
            self._records = {}
        self._seen, self._checked = seen, {}

"""Role tokens (kaip.local.controller.tokens) and ``kaip token``, on real files.

A token is shown once and kept only as scrypt(secret, salt) in a 0600 file; it authenticates as
its role and owners, a wrong secret, an unknown id or a malformed token as nobody; a token made
while the authenticator runs is accepted at once; bad roles, owners and names are refused with
the option named.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kaip.errors import ConfigError, ForbiddenError
from kaip.local.controller.auth import Identity, require, require_owner
from kaip.local.controller.sessions import SessionStore
from kaip.local.controller.tokens import (
    TOKENS_FILE,
    RoleTokenAuthenticator,
    create_token,
    read_tokens,
    revoke_token,
)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_a_token_is_kept_hashed_and_authenticates_as_its_role(tmp_path: Path) -> None:
    state = tmp_path / ".kaip"
    token, record = create_token(state, "deployer", ["team-a"], "alice")
    path = state / TOKENS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = token.split("_", 2)[2]
    assert secret not in path.read_text() and token not in path.read_text()
    assert read_tokens(state) == [record]
    auth = RoleTokenAuthenticator(state)
    assert auth.authenticate(bearer(token)) == Identity("alice", "deployer", ("team-a",))
    assert auth.authenticate(bearer(token)) == Identity("alice", "deployer", ("team-a",))
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert auth.authenticate(bearer(wrong)) is None
    assert auth.authenticate(bearer("kaip_000000000000_" + secret)) is None
    assert auth.authenticate(bearer("not-a-kaip-token")) is None
    assert auth.authenticate({}) is None


def test_a_token_made_later_is_accepted_at_once(tmp_path: Path) -> None:
    state = tmp_path / ".kaip"
    auth = RoleTokenAuthenticator(state)
    assert auth.authenticate(bearer("kaip_0123456789ab_" + "x" * 43)) is None  # no file yet
    token, _ = create_token(state, "viewer")
    assert auth.authenticate(bearer(token)) is not None
    second, _ = create_token(state, "admin", name="ops")
    assert auth.authenticate(bearer(second)) == Identity("ops", "admin", ())
    assert auth.authenticate(bearer(token)) is not None


def test_a_revoked_token_is_refused_at_once_and_ends_its_sessions(tmp_path: Path) -> None:
    state = tmp_path / ".kaip"
    auth = RoleTokenAuthenticator(state)
    sessions = SessionStore(revoked=auth.revoked)
    token, record = create_token(state, "deployer", name="leaver")
    other, _ = create_token(state, "viewer", name="stayer")
    principal = auth.authenticate(bearer(token))
    assert principal is not None and principal.credential == record.id
    sid, _ = sessions.open(principal)
    cookie = {"cookie": f"kaip_portal={sid}"}
    assert sessions.authenticate(cookie) is not None
    assert revoke_token(state, "leaver") == record
    assert auth.authenticate(bearer(token)) is None  # remembered a moment ago: forgotten now
    assert sessions.authenticate(cookie) is None
    assert sessions.authenticate(cookie) is None  # and the session is gone for good
    assert auth.authenticate(bearer(other)) is not None
    assert [r.name for r in read_tokens(state)] == ["stayer"]
    with pytest.raises(ConfigError, match=r"no token has the id or name 'leaver'.*stayer"):
        revoke_token(state, "leaver")
    admin = SessionStore(revoked=auth.revoked)
    sid, _ = admin.open(Identity("local-admin", "admin"))  # the run's token: no credential
    assert admin.authenticate({"cookie": f"kaip_portal={sid}"}) is not None


def test_two_tokens_of_one_name_are_revoked_by_id(tmp_path: Path) -> None:
    state = tmp_path / ".kaip"
    _, first = create_token(state, "viewer", name="ci")
    _, second = create_token(state, "viewer", name="ci")
    with pytest.raises(ConfigError, match=f"2 tokens are named 'ci'.*{first.id}.*revoke by id"):
        revoke_token(state, "ci")
    assert revoke_token(state, second.id) == second
    assert read_tokens(state) == [first]


@pytest.mark.parametrize(
    ("role", "owners", "name", "says"),
    [
        ("root", [], "", "--role 'root'"),
        ("deployer", [""], "", "--owner"),
        ("viewer", [], "<script>", "--name"),
    ],
)
def test_bad_options_are_refused_by_name(
    tmp_path: Path, role: str, owners: list[str], name: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        create_token(tmp_path / ".kaip", role, owners, name)
    assert not (tmp_path / ".kaip" / TOKENS_FILE).exists()


def test_a_deployer_acts_only_for_its_owners() -> None:
    scoped = Identity("bob", "deployer", ("team-a",))
    require_owner(scoped, "team-a", "promote")
    with pytest.raises(ForbiddenError, match="belongs to team-b"):
        require_owner(scoped, "team-b", "promote")
    require_owner(Identity("carol", "deployer"), "team-b", "promote")  # no owners: every owner
    with pytest.raises(ForbiddenError, match="needs the deployer role"):
        require(Identity("vic", "viewer"), "deployer", "promote")


def test_the_cli_prints_the_token_once_and_lists_records_only(tmp_path: Path) -> None:
    env = {**os.environ, "KAIP_LOCAL__STATE_DIR": str(tmp_path / ".kaip")}

    def kaip(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kaip.cli", "token", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    made = kaip("create", "--role", "deployer", "--owner", "team-a", "--name", "ci")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("kaip_") and "\n" not in token
    assert "ci: deployer for team-a" in made.stderr and token not in made.stderr
    listed = kaip("list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["role"], row["owners"]) == ("ci", "deployer", ["team-a"])
    assert token not in listed.stdout and token.split("_", 2)[2] not in listed.stdout
    bad = kaip("create", "--role", "root")
    assert bad.returncode != 0 and "--role 'root'" in bad.stderr and "Traceback" not in bad.stderr

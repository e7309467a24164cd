"""A real control port for contract tests: the admin API and the portal behind their guards.

:func:`running_control` runs, in a thread with its own event loop, what ``kaip up`` wires for its
control port: a real :class:`Controller` (real SQLite state, a real supervisor with no replicas)
and a :class:`ControlServer` on a free loopback port, accepting the run's token and the role
tokens made under ``state_dir`` as ``kaip up`` does. Tests talk to it with plain httpx.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kaip.local.controller.auth import FirstOf, admin_token_authenticator
from kaip.local.controller.control import ControlServer
from kaip.local.controller.control_port import control_port_app
from kaip.local.controller.guard import GuardPolicy
from kaip.local.controller.loop import Controller, ControllerConfig
from kaip.local.controller.sessions import SessionStore
from kaip.local.controller.tokens import RoleTokenAuthenticator
from kaip.local.state import State
from kaip.local.supervisor import Supervisor
from kaip.portal.local import local_portal

TOKEN = "t0ken-for-contract-tests"
CANARY_APP = """\
apiVersion: kaip.dev/v1alpha1
kind: App
metadata: {{name: web}}
spec:
  owner: {owner}
  command: [sleep, "{seconds}"]
  rollout:
    strategy: canary
    steps: [{{weight: 10, pause: {{}}}}, {{weight: 100}}]
"""
"""An App whose canary waits at a manual pause at 10 % (change ``seconds`` for a new revision)."""


@dataclass
class RunningControl:
    url: str
    port: int
    controller: Controller
    loop: asyncio.AbstractEventLoop
    headers: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {TOKEN}"})


def deploy_spec(control: RunningControl, spec_dir: Path, text: str) -> None:
    """Write ``text`` as ``spec_dir``'s spec and deploy it with the run's token (200 or fail)."""
    spec_dir.mkdir(exist_ok=True)
    (spec_dir / "kaip.yaml").write_text(text)
    answer = httpx.post(
        control.url + "/_kaip/deploy",
        json={"paths": [str(spec_dir)]},
        headers=control.headers,
        timeout=60,
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text


@contextmanager
def running_control(
    state_dir: Path, *, allowed_hosts: frozenset[str] = frozenset()
) -> Iterator[RunningControl]:
    started: threading.Event = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        state = State.open(state_dir)
        supervisor = Supervisor(state_dir / "logs")
        controller = Controller(
            ControllerConfig(state_dir, "http://127.0.0.1:9", tick_seconds=0.05), state, supervisor
        )
        role_tokens = RoleTokenAuthenticator(state_dir)
        bearer = FirstOf([admin_token_authenticator(TOKEN), role_tokens])
        policy = GuardPolicy(allowed_hosts=allowed_hosts)
        sessions = SessionStore(revoked=role_tokens.revoked)
        portal = local_portal(controller, bearer, policy, sessions, ".kaip/admin.token")
        guard = control_port_app(controller, bearer, policy, portal)
        server = ControlServer(guard, port=0)
        port = await server.start()
        box["running"] = RunningControl(
            f"http://127.0.0.1:{port}", port, controller, asyncio.get_running_loop()
        )
        started.set()
        try:
            await controller.run()
        finally:
            await server.stop()
            state.close()

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced to the test below
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=thread_main, daemon=True)
    thread.start()
    assert started.wait(30), "the control port did not start"
    if "error" in box:
        raise AssertionError(f"the control port failed: {box['error']!r}")
    running = box["running"]
    assert isinstance(running, RunningControl)
    try:
        yield running
    finally:
        running.loop.call_soon_threadsafe(running.controller.stop)
        thread.join(30)

"""The Argo CD health check in charts/kaip/argocd/health.lua, run by a real Lua interpreter."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

HEALTH = Path(__file__).parents[2] / "charts" / "kaip" / "argocd" / "health.lua"
LUA = next(
    (shutil.which(n) for n in ("lua5.1", "luajit", "lua5.4", "lua") if shutil.which(n)), None
)


@pytest.fixture(autouse=True)
def lua_interpreter() -> None:
    if LUA is None:
        pytest.fail("no Lua interpreter: run `make setup` (tools/setup.sh lua)", pytrace=False)


def lua(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{json.dumps(k)}] = {lua(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(lua(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nil"
    return json.dumps(value)


def health(obj: dict[str, Any]) -> tuple[str, str]:
    program = (
        f"obj = {lua(obj)}\nlocal hs = (function()\n{HEALTH.read_text()}\nend)()\n"
        'io.write(hs.status, "\\t", hs.message)\n'
    )
    assert LUA is not None
    done = subprocess.run([LUA, "-"], input=program, capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    status, _, message = done.stdout.partition("\t")
    return status, message


def model(generation: int, observed: int | None, *conditions: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "digits", "generation": generation}}
    if observed is not None:
        obj["status"] = {"observedGeneration": observed, "conditions": list(conditions)}
    return obj


def cond(type_: str, status: str, reason: str, message: str, gen: int = 2) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "observedGeneration": gen}  # fmt: skip


def test_no_status_yet_is_progressing() -> None:
    assert health(model(1, None))[0] == "Progressing"


def test_ready_for_the_current_generation_is_healthy() -> None:
    obj = model(2, 2, cond("Ready", "True", "ReplicasReady", "2/2 replicas ready"),
                cond("Progressing", "False", "RolloutComplete", ""),
                cond("Degraded", "False", "AsExpected", ""))  # fmt: skip
    assert health(obj) == ("Healthy", "2/2 replicas ready")


def test_ready_for_an_older_generation_is_progressing() -> None:
    obj = model(3, 2, cond("Ready", "True", "ReplicasReady", "2/2 replicas ready"))
    assert health(obj)[0] == "Progressing"


def test_degraded_carries_the_operators_message() -> None:
    message = "spec.scaling.minReplicas: too big"
    obj = model(
        2,
        2,
        cond("Ready", "False", "InvalidSpec", "x"),
        cond("Degraded", "True", "InvalidSpec", message),
    )
    assert health(obj) == ("Degraded", "spec.scaling.minReplicas: too big")


def test_a_canary_in_progress_is_progressing_even_when_ready() -> None:
    obj = model(2, 2, cond("Ready", "True", "ReplicasReady", "2/2"),
                cond("Progressing", "True", "CanaryInProgress", "canary abc at step 1/3"),
                cond("Degraded", "False", "AsExpected", ""))  # fmt: skip
    assert health(obj) == ("Progressing", "canary abc at step 1/3")


def test_a_fixed_spec_not_yet_reconciled_is_no_longer_degraded() -> None:
    obj = model(3, 2, cond("Degraded", "True", "InvalidSpec", "bad"))
    assert health(obj)[0] == "Progressing"

"""``kaip catalog export`` writes Backstage entities that Backstage's own validator accepts.

The real CLI exports the quickstart (a Model and an App) with a state database that knows the
Model's running revision; the entities follow the mapping of ``kaip.render.backstage`` and
``@backstage/catalog-model`` (pinned in ``tools/backstage/package-lock.json``, run with Node)
accepts every one of them, and refuses the same entities broken on purpose (so it is really
judging). A bad spec exports nothing and says why.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaip.local.state import State

ROOT = Path(__file__).parents[2]
VALIDATOR = ROOT / "tools" / "backstage"


def validate(entities: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    node = shutil.which("node")
    if node is None or not (VALIDATOR / "node_modules" / "@backstage" / "catalog-model").exists():
        pytest.fail("Node or @backstage/catalog-model is missing: run `make setup` (backstage)")
    done = subprocess.run(
        [node, str(VALIDATOR / "validate.mjs")], input=json.dumps(entities),
        capture_output=True, text=True, timeout=120, cwd=VALIDATOR,
    )  # fmt: skip
    assert done.stderr == "", done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def kaip(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAIP_LOCAL__STATE_DIR": str(cwd / ".kaip")}
    return subprocess.run(
        [sys.executable, "-m", "kaip.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    work = tmp_path_factory.mktemp("export")
    state = State.open(work / ".kaip")
    state.set_stable("Model", "digits", "abc123def0")
    state.close()
    done = kaip(
        work, "catalog", "export", str(ROOT / "examples" / "quickstart"),
        "--output-dir", str(work / "out"),
        "--portal-url", "http://localhost:8081",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "1 Resource" in done.stdout
    return list(yaml.safe_load_all((work / "out" / "catalog-info.yaml").read_text()))


def by_ref(entities: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{e['kind']}:{e['metadata']['name']}": e for e in entities}


def test_the_mapping(exported: list[dict[str, Any]]) -> None:
    found = by_ref(exported)
    assert set(found) == {
        "Group:ml-platform", "Group:web", "Resource:digits", "Component:digits-server",
        "API:digits-oip-v2", "Component:digits-ui",
    }  # fmt: skip
    model, server = found["Resource:digits"], found["Component:digits-server"]
    assert model["spec"] == {"type": "ai-model", "owner": "group:ml-platform"}
    assert server["spec"]["type"] == "model-server"
    assert server["spec"]["dependsOn"] == ["resource:digits"]
    assert server["spec"]["providesApis"] == ["api:digits-oip-v2"]
    assert found["API:digits-oip-v2"]["spec"]["type"] == "openapi"
    assert "/v2/models/{name}/infer" in found["API:digits-oip-v2"]["spec"]["definition"]
    assert found["Component:digits-ui"]["spec"]["owner"] == "group:web"
    annotations = model["metadata"]["annotations"]
    assert annotations == {
        "backstage.io/kubernetes-id": "digits",
        "kaip.dev/revision": "abc123def0",
    }
    assert "kaip.dev/revision" not in found["Component:digits-ui"]["metadata"]["annotations"]
    assert {"url": "http://localhost:8081/resources/digits", "title": "kaip portal"} in (
        model["metadata"]["links"]
    )


def test_backstage_accepts_every_entity(exported: list[dict[str, Any]]) -> None:
    code, results = validate(exported)
    assert code == 0, results
    assert [r["ok"] for r in results] == [True] * len(exported)


def test_backstage_refuses_them_broken(exported: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(exported)
    found = by_ref(broken)
    del found["Component:digits-server"]["spec"]["type"]
    found["Resource:digits"]["metadata"]["name"] = "digits!"
    code, results = validate(broken)
    assert code == 1
    bad = {r["ref"] for r in results if not r["ok"]}
    assert bad == {"Component:default/digits-server", "Resource:default/digits!"}


def test_a_bad_spec_exports_nothing(tmp_path: Path) -> None:
    (tmp_path / "kaip.yaml").write_text("apiVersion: kaip.dev/v1alpha1\nkind: Model\n")
    done = kaip(tmp_path, "catalog", "export", str(tmp_path), "--output-dir", str(tmp_path / "out"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "kaip.yaml" in done.stderr
    assert not (tmp_path / "out" / "catalog-info.yaml").exists()

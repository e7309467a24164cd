"""Golden tests: spec fixtures -> rendered Kubernetes manifests, reviewed as YAML diffs.

A change in rendering shows up as a diff of ``tests/golden/rendered/*.yaml``. When the change
is intended, rewrite them with ``UPDATE_GOLDEN=1 pytest tests/golden`` and review the diff.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kaip.plan import build_plan, plan_workload
from kaip.render.kube import Backend, manifests_yaml, render_manifests
from kaip.settings import KubeSettings, Settings
from kaip.spec import load_paths

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
RENDERED = HERE / "rendered"
EXAMPLES = HERE.parents[1] / "examples"


@dataclass(frozen=True)
class Case:
    paths: list[Path]
    kube: dict[str, Any] = field(default_factory=dict)
    namespace: str | None = None
    stable: Path | None = None
    """A second revision of the (single) resource, live next to it."""
    canary_weight: int = 10


CASES: dict[str, Case] = {
    "quickstart": Case([EXAMPLES / "quickstart"], namespace="demo"),
    "gpu-model": Case([FIXTURES / "gpu-model.yaml"]),
    "engine-vllm": Case([FIXTURES / "engine-vllm.yaml"], namespace="llm"),
    "canary": Case([FIXTURES / "canary" / "new.yaml"], stable=FIXTURES / "canary" / "stable.yaml"),
    "mirror": Case(
        [FIXTURES / "mirror" / "new.yaml"],
        stable=FIXTURES / "mirror" / "stable.yaml",
        canary_weight=0,
    ),
    "blue-green": Case(
        [FIXTURES / "blue-green" / "new.yaml"],
        stable=FIXTURES / "blue-green" / "stable.yaml",
        canary_weight=0,
    ),
    "keda": Case([FIXTURES / "keda.yaml"], kube={"autoscaler": "keda"}),
    "inference-pool": Case([FIXTURES / "inference-pool.yaml"], namespace="llm"),
    "inference-pool-canary": Case(
        [FIXTURES / "inference-pool-canary" / "new.yaml"],
        stable=FIXTURES / "inference-pool-canary" / "stable.yaml",
        namespace="llm",
        kube={"inference_gateway": "gateways/inference"},
    ),
    "pod-options": Case([FIXTURES / "pod-options.yaml"]),
    "training-kueue": Case([FIXTURES / "training-kueue.yaml"], kube={"kueue_queue": "gpu-team"}),
    "training-jobset": Case(
        [FIXTURES / "training-kueue.yaml"], kube={"kueue_queue": "gpu-team", "jobset": True}
    ),
    "network": Case(
        [FIXTURES / "network.yaml"],
        namespace="search",
        kube={"ingress_namespaces": ["envoy-gateway-system", "monitoring"]},
    ),
}


@pytest.fixture(autouse=True)
def _no_kaip_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("KAIP_"):
            monkeypatch.delenv(name)
    yield


def render_case(case: Case) -> str:
    settings = Settings(kube=KubeSettings(**case.kube))
    plan = build_plan(load_paths(case.paths).documents, settings, case.namespace)
    traffic = None
    if case.stable is not None:
        (new,) = plan.workloads
        (stable_doc,) = load_paths([case.stable]).documents
        stable = plan_workload(stable_doc.resource, settings, new.namespace)
        traffic = {
            new.key: [
                Backend(stable, 100 - case.canary_weight),
                Backend(new, case.canary_weight),
            ]
        }
    return manifests_yaml(render_manifests(plan, traffic))


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_manifests_match_golden(name: str) -> None:
    actual = render_case(CASES[name])
    golden = RENDERED / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(actual, encoding="utf-8")
        return
    if not golden.exists():
        pytest.fail(f"{golden} is missing: run UPDATE_GOLDEN=1 pytest tests/golden", pytrace=False)
    expected = golden.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"{golden.name} (golden)",
                tofile=f"{golden.name} (rendered now)",
            )
        )
        pytest.fail(
            f"rendering changed; if intended, run UPDATE_GOLDEN=1 pytest tests/golden\n{diff}",
            pytrace=False,
        )


def test_every_fixture_is_rendered_by_a_case() -> None:
    used = {p.resolve() for case in CASES.values() for p in case.paths}
    used |= {case.stable.resolve() for case in CASES.values() if case.stable}
    fixtures = {p.resolve() for p in FIXTURES.rglob("*.yaml")}
    assert fixtures <= used, f"fixtures no case renders: {sorted(map(str, fixtures - used))}"


def test_no_stale_golden_files() -> None:
    assert {p.stem for p in RENDERED.glob("*.yaml")} == set(CASES)

"""The generated CRDs are structural apiextensions.k8s.io/v1 objects, and say what we mean.

A real kube-apiserver is the final judge (tests/e2e_kube/test_crds.py); this test is the fast
check of the rules it applies: every node typed, no keyword a v1 CRD forbids, the
int-or-string form only where declared, exclusive bounds as booleans, every cross-field rule
present as CEL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaip.spec import KINDS
from kaip.spec.crd import crds
from kaip.spec.rules import RULES

KAIP = Path(sys.executable).with_name("kaip")
ALLOWED = {
    "type", "description", "default", "enum", "format", "pattern", "minLength", "maxLength",
    "minItems", "maxItems", "maxProperties", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum",
    "required", "properties", "items", "additionalProperties", "anyOf",
    "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-validations",
}  # fmt: skip
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]
TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("crd", crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_schema_is_structural(crd: dict[str, Any]) -> None:
    for path, node in _nodes(_schema(crd)):
        assert set(node) <= ALLOWED, (path, set(node) - ALLOWED)
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node and node["anyOf"] == INT_OR_STRING, path
        else:
            assert node.get("type") in TYPES, path
            assert "anyOf" not in node, path
        assert not ("properties" in node and "additionalProperties" in node), path
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(key, True) is True, path
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            assert set(node["x-kubernetes-list-map-keys"]) <= set(item["required"]), path
        if "default" in node and node.get("type") in TYPES - {"object", "array"}:
            expected = {"string": str, "integer": int, "number": (int, float), "boolean": bool}
            assert isinstance(node["default"], expected[node["type"]]), path


@pytest.mark.parametrize("crd", crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_metadata_is_only_typed_and_status_is_a_subresource(crd: dict[str, Any]) -> None:
    schema = _schema(crd)
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["required"] == ["spec"]
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    assert set(conditions["items"]["required"]) == {
        "type", "status", "lastTransitionTime", "reason", "message",
    }  # fmt: skip
    assert {c["name"] for c in version["additionalPrinterColumns"]} >= {"Owner", "Ready", "Age"}


def test_names_group_and_scope() -> None:
    by_kind = {c["spec"]["names"]["kind"]: c for c in crds()}
    assert list(by_kind) == list(KINDS)
    for kind, crd in by_kind.items():
        names = crd["spec"]["names"]
        assert crd["metadata"]["name"] == f"{names['plural']}.kaip.dev"
        assert crd["spec"]["group"] == "kaip.dev" and crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["versions"][0]["name"] == "v1alpha1"
        assert names["categories"] == ["kaip"] and names["listKind"] == f"{kind}List"
    short = [s for c in by_kind.values() for s in c["spec"]["names"]["shortNames"]]
    assert len(short) == len(set(short))


def test_every_cross_field_rule_is_in_cel() -> None:
    text = json.dumps(crds())
    for rule in RULES:
        assert json.dumps(rule.cel)[1:-1] in text, rule.message


def test_kaip_crd_prints_yaml_and_json_alike() -> None:
    def run(*args: str) -> str:
        result = subprocess.run(
            [str(KAIP), "crd", *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    from_yaml = list(yaml.safe_load_all(run()))
    from_json = json.loads(run("--output", "json"))
    assert from_json["kind"] == "List" and from_json["items"] == from_yaml == crds()


def test_kaip_schema_rejects_an_unknown_kind_without_a_traceback() -> None:
    result = subprocess.run(
        [str(KAIP), "schema", "--kind", "Deployment"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Invalid value for '--kind'" in result.stderr and "'Deployment'" in result.stderr
    assert "Traceback" not in result.stderr


def test_kaip_schema_for_one_kind() -> None:
    result = subprocess.run(
        [str(KAIP), "schema", "--kind", "TrainingJob"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    schema = json.loads(result.stdout)
    assert schema["$ref"] == "#/$defs/TrainingJob"
    assert "Model" not in schema["$defs"]

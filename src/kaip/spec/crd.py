"""CustomResourceDefinitions for Model, App and TrainingJob (``kaip crd``).

Built from the same pydantic models as ``kaip validate`` and ``kaip schema``, rewritten into
the *structural* OpenAPI v3 schema an ``apiextensions.k8s.io/v1`` CRD needs: every ``$ref``
inlined, a ``type`` on every node, no ``oneOf``/``anyOf`` carrying types (the one exception is
the int-or-string form Kubernetes defines for quantities), ``exclusiveMinimum`` as OpenAPI 3.0's
boolean, and the cross-field rules of :mod:`kaip.spec.rules` as CEL ``x-kubernetes-validations``.

Optional fields are not ``nullable``: the apiserver prunes a ``null`` from a non-nullable field
before validating, which is what pydantic does with ``None`` (the field takes its default).
Any node this module does not know how to translate is an error, never silently passed on.
Pure: builds dicts, prints nothing.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from pydantic import BaseModel

from kaip.spec.base import GROUP, VERSION
from kaip.spec.kinds import KINDS
from kaip.spec.rules import NAME_CEL, Rule, rules_for
from kaip.spec.schema import SchemaGenerator, definitions, models_by_name
from kaip.spec.status import ResourceStatus

Schema = dict[str, Any]

SHORT_NAMES: Final = {"Model": ["kmodel"], "App": ["kapp"], "TrainingJob": ["ktj", "ktrain"]}
CATEGORIES: Final = ["kaip"]
_READY = '.status.conditions[?(@.type=="Ready")].status'
# A column shows only the first match of a list, so the split is summarised in status.traffic.
_TRAFFIC = {"name": "Traffic", "type": "string", "jsonPath": ".status.traffic"}
_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
# The rollout's latest decision: start, hold, advance while a canary runs; promote, rollback,
# abort once it ended (see kaip.kube.operator.canary).
_ROLLOUT = {"name": "Rollout", "type": "string", "jsonPath": ".status.rollout.lastDecision.action"}
PRINTER_COLUMNS: Final[dict[str, list[dict[str, Any]]]] = {
    "Model": [
        {"name": "Owner", "type": "string", "jsonPath": ".spec.owner"},
        {"name": "Format", "type": "string", "jsonPath": ".spec.artifact.format"},
        {"name": "Ready", "type": "string", "jsonPath": _READY},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
        _TRAFFIC,
        _ROLLOUT,
        {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
        _AGE,
    ],
    "App": [
        {"name": "Owner", "type": "string", "jsonPath": ".spec.owner"},
        {"name": "Ready", "type": "string", "jsonPath": _READY},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
        _TRAFFIC,
        _ROLLOUT,
        {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
        _AGE,
    ],
    "TrainingJob": [
        {"name": "Owner", "type": "string", "jsonPath": ".spec.owner"},
        {"name": "Nodes", "type": "integer", "jsonPath": ".spec.nodes"},
        {"name": "Ready", "type": "string", "jsonPath": _READY},
        {"name": "Succeeded", "type": "integer", "jsonPath": ".status.succeeded"},
        {"name": "Failed", "type": "integer", "jsonPath": ".status.failed"},
        _AGE,
    ],
}

_KEPT: Final = frozenset(
    {
        "type",
        "description",
        "default",
        "enum",
        "format",
        "pattern",
        "minLength",
        "maxProperties",
        "maxLength",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "required",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
    }
)
_DROPPED: Final = frozenset({"title", "uniqueItems"})  # uniqueItems: x-kubernetes-list-type set


class _Structural:
    """Rewrites one JSON Schema (with ``$defs``) into a structural schema."""

    def __init__(self, defs: dict[str, Schema], models: dict[str, type[BaseModel]]) -> None:
        self.defs = defs
        self.models = models

    def convert(self, node: Schema) -> Schema:
        node = dict(node)
        if "$ref" in node:
            name = node.pop("$ref").rsplit("/", 1)[-1]
            merged = {**self.convert(self.defs[name]), **self.convert_keys(node)}
            model = self.models.get(name)
            if model is not None:
                rules = [_validation(r) for r in rules_for(model)]
                if rules:
                    merged["x-kubernetes-validations"] = rules
            return merged
        if "anyOf" in node:
            return self._any_of(node)
        return self.convert_keys(node)

    def _any_of(self, node: Schema) -> Schema:
        branches = [b for b in node.pop("anyOf") if b != {"type": "null"}]
        types = sorted(str(b.get("type")) for b in branches)
        if len(branches) == 1:
            return {**self.convert(branches[0]), **self.convert_keys(node)}
        if types == ["integer", "string"]:
            out: Schema = {
                "x-kubernetes-int-or-string": True,
                "anyOf": [{"type": "integer"}, {"type": "string"}],
            }
            for branch in branches:  # their checks apply to their own type only
                out.update(self.convert_keys({k: v for k, v in branch.items() if k != "type"}))
            out.update(self.convert_keys(node))
            return out
        raise ValueError(f"no structural form for anyOf {branches!r}")

    def convert_keys(self, node: Schema) -> Schema:
        out: Schema = {}
        for key, value in node.items():
            if key in _DROPPED or (key == "default" and value is None):
                continue
            if key == "properties":
                out[key] = {k: self.convert(v) for k, v in value.items()}
            elif key == "items":
                out[key] = self.convert(value)
            elif key == "additionalProperties":
                if value is False:
                    continue  # structural schemas prune unknown fields instead
                if value is True or value == {}:
                    out["x-kubernetes-preserve-unknown-fields"] = True
                else:
                    out[key] = self.convert(value)
            elif key == "propertyNames":  # not structural: the same check as a CEL rule
                out.setdefault("x-kubernetes-validations", []).append(_key_rule(value))
            elif key == "const":
                out["enum"] = [value]
            elif key in ("exclusiveMinimum", "exclusiveMaximum"):
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                out[key] = True
            elif key in _KEPT:
                out[key] = copy.deepcopy(value)
            else:
                raise ValueError(f"no structural form for {key!r}")
        if "x-kubernetes-preserve-unknown-fields" in out and "type" not in out:
            out["type"] = "object"
        first = [k for k in ("type", "description") if k in out]  # for people reading YAML
        return {**{k: out[k] for k in first}, **out}


def _validation(rule: Rule) -> Schema:
    """One ``x-kubernetes-validations`` entry."""
    out: Schema = {"rule": rule.cel, "message": rule.message, "fieldPath": f".{rule.field}"}
    if rule.message_expression is not None:
        out["messageExpression"] = rule.message_expression
    return out


def _key_rule(names: Schema) -> Schema:
    """A ``propertyNames`` schema (a map's keys: pattern, maxLength) as a CEL rule; its
    ``description``, if any, is the rule's message."""
    if set(names) - {"pattern", "maxLength", "description"}:
        raise ValueError(f"no structural form for propertyNames {names!r}")
    checks = []
    if "maxLength" in names:
        checks.append(f"size(k) <= {int(names['maxLength'])}")
    if "pattern" in names:
        if "'" in names["pattern"]:
            raise ValueError(f"no CEL form for the pattern {names['pattern']!r}")
        checks.append(f"k.matches(r'{names['pattern']}')")
    message = names.get(
        "description", "every key must be a Kubernetes qualified name (example.com/name)"
    )
    return {"rule": f"self.all(k, {' && '.join(checks)})", "message": message}


def _status_schema() -> Schema:
    top = ResourceStatus.model_json_schema(
        by_alias=True, ref_template="#/$defs/{model}", schema_generator=SchemaGenerator
    )
    defs = top.pop("$defs", {})
    return _Structural(defs, {}).convert(top)


def _spec_schema(kind: str) -> tuple[str, Schema]:
    (name,), defs = definitions([kind])
    models = models_by_name()
    spec_ref = defs[name]["properties"]["spec"]
    return str(defs[name].get("description", "")), _Structural(defs, models).convert(spec_ref)


def _plural(kind: str) -> str:
    return kind.lower() + "s"


def crd(kind: str) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    description, spec = _spec_schema(kind)
    root: Schema = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": _status_schema(),
        },
        "x-kubernetes-validations": [
            {
                "rule": NAME_CEL,
                "message": "metadata.name must be an RFC 1123 label (at most 63 lower-case "
                "letters, digits and '-', starting and ending with a letter or digit)",
            }
        ],
    }
    plural = _plural(kind)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "kaip", "app.kubernetes.io/part-of": "kaip"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": SHORT_NAMES[kind],
                "categories": CATEGORIES,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS[kind],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def crds() -> list[dict[str, Any]]:
    """The CRDs of every kind, in a stable order."""
    return [crd(kind) for kind in KINDS]

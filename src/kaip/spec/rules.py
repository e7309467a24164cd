"""Cross-field rules of the spec, said once more in the two languages schemas speak.

The pydantic model validators in :mod:`kaip.spec.base` and :mod:`kaip.spec.kinds` are the
truth. Each rule here restates one of them for the generated schemas: as JSON Schema (for
editors, via ``kaip schema``) where JSON Schema can say it, and as a CEL rule
(``x-kubernetes-validations``, via ``kaip crd``) for the apiserver. JSON Schema has no way to
compare two values of one document, so "minReplicas <= maxReplicas", "step weights strictly
increase" and "no served name is another's followed by '/...'" exist only in pydantic and CEL;
the property tests exclude exactly those three from the schema/pydantic agreement, and a fourth
that neither JSON Schema nor CEL can say: a network peer's ``except`` blocks must lie inside its
``cidr`` (pydantic, then the apiserver's own NetworkPolicy validation). Pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from kaip.spec.base import NAME_PATTERN, Resources, Rollout, Scaling
from kaip.spec.kinds import CODE_FORMATS, URI_SCHEME_PATTERN, AppSpec, Artifact, Serve
from kaip.spec.network import EgressPeer, Peer


@dataclass(frozen=True)
class Rule:
    """One cross-field check on the objects of ``model``, about its field ``field``."""

    model: type[BaseModel]
    field: str
    message: str
    cel: str
    json_schema: Mapping[str, Any] | None
    """None where JSON Schema cannot express the rule."""


def _default(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].default


_CODE = ", ".join(f"'{f}'" for f in sorted(CODE_FORMATS))

RULES: tuple[Rule, ...] = (
    Rule(
        Resources,
        "gpuModel",
        "gpuModel is set but gpu is 0: set gpu to 1 or more",
        "!has(self.gpuModel) || (has(self.gpu) && self.gpu >= 1)",
        {
            "if": {"required": ["gpuModel"], "properties": {"gpuModel": {"type": "string"}}},
            "then": {"required": ["gpu"], "properties": {"gpu": {"minimum": 1}}},
        },
    ),
    Rule(
        Scaling,
        "minReplicas",
        "minReplicas is greater than maxReplicas",
        f"(has(self.minReplicas) ? self.minReplicas : {_default(Scaling, 'min_replicas')}) <= "
        f"(has(self.maxReplicas) ? self.maxReplicas : {_default(Scaling, 'max_replicas')})",
        None,
    ),
    Rule(
        Rollout,
        "steps",
        "step weights must be strictly increasing",
        "!has(self.steps) || (self.steps.all(a, self.steps.exists_one(b, b.weight == a.weight))"
        " && self.steps.map(s, s.weight).isSorted())",
        None,
    ),
    Rule(
        Artifact,
        "uri",
        "unsupported URI scheme: use a relative path, file://, http://, https://, s3:// or gs://",
        f"!self.uri.contains('://') || self.uri.matches('{URI_SCHEME_PATTERN}')",
        {
            "properties": {
                "uri": {"anyOf": [{"not": {"pattern": "://"}}, {"pattern": URI_SCHEME_PATTERN}]}
            }
        },
    ),
    Rule(
        Artifact,
        "sha256",
        "a pickle or format 'python' runs code when loaded: pin it with sha256 or set trust: true",
        f"!(self.format in [{_CODE}]) || has(self.sha256) || (has(self.trust) && self.trust)",
        {
            "if": {"properties": {"format": {"enum": sorted(CODE_FORMATS)}}},
            "then": {
                "anyOf": [
                    {"required": ["sha256"], "properties": {"sha256": {"type": "string"}}},
                    {"required": ["trust"], "properties": {"trust": {"const": True}}},
                ]
            },
        },
    ),
    Rule(
        Artifact,
        "sha256",
        "code fetched over plain http:// must be pinned with sha256 (or served over https://)",
        f"!(self.format in [{_CODE}]) || !self.uri.startsWith('http://') || has(self.sha256)",
        {
            "if": {
                "required": ["format", "uri"],
                "properties": {
                    "format": {"enum": sorted(CODE_FORMATS)},
                    "uri": {"type": "string", "pattern": "^http://"},
                },
            },
            "then": {"required": ["sha256"], "properties": {"sha256": {"type": "string"}}},
        },
    ),
    Rule(
        Artifact,
        "pvc",
        "pvc holds the artifact at a path relative to the claim's root: uri must be such a path",
        "!has(self.pvc) || (!self.uri.contains('://') && !self.uri.startsWith('/'))",
        {
            "if": {"required": ["pvc"]},
            "then": {"properties": {"uri": {"not": {"pattern": "(://|^/)"}}}},
        },
    ),
    Rule(
        Artifact,
        "entrypoint",
        "format 'python' needs an entrypoint (module:Class)",
        "self.format != 'python' || has(self.entrypoint)",
        {
            "if": {"properties": {"format": {"const": "python"}}},
            "then": {"required": ["entrypoint"], "properties": {"entrypoint": {"type": "string"}}},
        },
    ),
    Rule(
        Artifact,
        "entrypoint",
        "entrypoint is only used with format 'python'",
        "self.format == 'python' || !has(self.entrypoint)",
        {
            "if": {"properties": {"format": {"not": {"const": "python"}}}},
            "then": {"properties": {"entrypoint": {"type": "null"}}},
        },
    ),
    Rule(
        Serve,
        "names",
        "a served name may not be another served name followed by '/...'",
        "!has(self.names) || self.names.all(a, self.names.all(b, a == b || "
        "!b.startsWith(a + '/')))",
        None,
    ),
    Rule(
        AppSpec,
        "command",
        "an App needs command (to run locally) or image (on Kubernetes)",
        "has(self.command) || has(self.image)",
        {
            "anyOf": [
                {"required": ["command"], "properties": {"command": {"type": "array"}}},
                {"required": ["image"], "properties": {"image": {"type": "string"}}},
            ]
        },
    ),
)


def _present(name: str, type_: str) -> dict[str, Any]:
    """JSON Schema: ``name`` is there and not null (YAML's null means absent to the models)."""
    return {"required": [name], "properties": {name: {"type": type_}}}


def _peer_rules(model: type[BaseModel]) -> tuple[Rule, ...]:
    return (
        Rule(
            model,
            "resource",
            "a peer names exactly one of resource, namespace/podLabels or cidr",
            # namespace is a CEL keyword: the apiserver escapes it as __namespace__
            "[has(self.resource), has(self.__namespace__) || has(self.podLabels), "
            "has(self.cidr)].filter(b, b).size() == 1",
            {
                "oneOf": [
                    _present("resource", "string"),
                    {"anyOf": [_present("namespace", "string"), _present("podLabels", "object")]},
                    _present("cidr", "string"),
                ]
            },
        ),
        Rule(
            model,
            "except",
            "except narrows a cidr: set cidr too",
            "!has(self.except) || has(self.cidr)",
            {"if": _present("except", "array"), "then": _present("cidr", "string")},
        ),
    )


RULES += _peer_rules(Peer) + _peer_rules(EgressPeer)

NAME_CEL = f"size(self.metadata.name) <= 63 && self.metadata.name.matches('{NAME_PATTERN}')"
"""On the CRD's root: a kaip resource's name is an RFC 1123 label (it names Services)."""


def rules_for(model: type[BaseModel]) -> list[Rule]:
    return [r for r in RULES if r.model is model]

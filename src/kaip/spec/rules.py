"""Cross-field rules of the spec, said once more in the two languages schemas speak.

The pydantic model validators in :mod:`kaip.spec.base` and :mod:`kaip.spec.kinds` are the
truth. Each rule here restates one of them for the generated schemas: as JSON Schema (for
editors, via ``kaip schema``) where JSON Schema can say it, and as a CEL rule
(``x-kubernetes-validations``, via ``kaip crd``) for the apiserver. JSON Schema has no way to
compare two values of one document, so "minReplicas <= maxReplicas", "step weights strictly
increase" and "no served name is another's followed by '/...'" exist only in pydantic and CEL;
the property tests exclude exactly those three from the schema/pydantic agreement. Pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from kaip.spec.base import NAME_PATTERN, Resources, Rollout, Scaling
from kaip.spec.kinds import PICKLE_FORMATS, URI_SCHEME_PATTERN, AppSpec, Artifact, Serve


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


_PICKLES = ", ".join(f"'{f}'" for f in sorted(PICKLE_FORMATS))

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
        "a pickle format runs code when loaded: pin it with sha256 or set trust: true",
        f"!(self.format in [{_PICKLES}]) || has(self.sha256) || (has(self.trust) && self.trust)",
        {
            "if": {"properties": {"format": {"enum": sorted(PICKLE_FORMATS)}}},
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

NAME_CEL = f"size(self.metadata.name) <= 63 && self.metadata.name.matches('{NAME_PATTERN}')"
"""On the CRD's root: a kaip resource's name is an RFC 1123 label (it names Services)."""


def rules_for(model: type[BaseModel]) -> list[Rule]:
    return [r for r in RULES if r.model is model]

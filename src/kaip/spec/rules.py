"""Cross-field rules of the spec, said once more in the two languages schemas speak.

The pydantic model validators in :mod:`kaip.spec.base` and :mod:`kaip.spec.kinds` are the
truth. Each rule here restates one of them for the generated schemas: as JSON Schema (for
editors, via ``kaip schema``) where JSON Schema can say it, and as a CEL rule
(``x-kubernetes-validations``, via ``kaip crd``) for the apiserver. JSON Schema has no way to
compare two values of one document, so "minReplicas <= maxReplicas", "step weights strictly
increase" and "no served name is another's followed by '/...'" exist only in pydantic and CEL,
as does "a remote URI splits into host, port and path" (urllib in pydantic, the apiserver's URL
library in CEL); the property tests exclude exactly those four from the schema/pydantic
agreement, and a fifth that neither JSON Schema nor CEL can say: a network peer's ``except``
blocks must lie inside its ``cidr`` (pydantic, then the apiserver's own NetworkPolicy
validation). Where kaip's message names a value (serve.engine's: the flag, the engine, the
format, the protocols), the CEL rule builds the same words with a ``messageExpression``, so
``kubectl apply`` says what ``kaip validate`` says. Pure data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from kaip.spec.base import NAME_PATTERN, Resources, Scaling
from kaip.spec.engine import (
    ENGINE_FORMATS,
    FORMAT_HINT,
    PROTOCOLS_HINT,
    RESERVED_FLAG_HINT,
    RESERVED_FLAG_MESSAGE,
    RESERVED_FLAG_PATTERN,
    Engine,
)
from kaip.spec.kinds import (
    CODE_FORMATS,
    MLFLOW_URI_PATTERN,
    REGISTRY_URI_PATTERN,
    URI_SCHEME_PATTERN,
    AppSpec,
    Artifact,
    ModelSpec,
    Serve,
)
from kaip.spec.network import EgressPeer, Peer
from kaip.spec.pod import (
    GPU_PRODUCT_LABEL,
    INTEGER_PATTERN,
    RESERVED_MOUNT_PATHS,
    RESERVED_VOLUME_NAMES,
    EnvFromSource,
    EnvVarSource,
    LabelSelectorRequirement,
    NodeSelectorRequirement,
    PodOptions,
    Toleration,
    Volume,
)
from kaip.spec.rollout import Rollout


@dataclass(frozen=True)
class Rule:
    """One cross-field check on the objects of ``model``, about its field ``field``."""

    model: type[BaseModel]
    field: str
    message: str
    cel: str
    json_schema: Mapping[str, Any] | None
    """None where JSON Schema cannot express the rule."""
    message_expression: str | None = None
    """CEL building the apiserver's message from the object, where kaip's names a value of it
    (the apiserver says ``message`` should this fail to evaluate)."""


def _default(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].default


_CODE = ", ".join(f"'{f}'" for f in sorted(CODE_FORMATS))


def _set(field: str, json_type: str) -> dict[str, Any]:
    """JSON Schema for "``field`` is present and not null" (pydantic reads null as unset)."""
    return {"required": [field], "properties": {field: {"type": json_type}}}


def _exactly_one(model: type[BaseModel], fields: tuple[str, ...], json_type: str) -> Rule:
    """One of ``fields`` (spec names) set, the others absent."""
    count = " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields)
    return Rule(
        model,
        fields[0],
        f"set exactly one of {', '.join(fields)}",
        f"{count} == 1",
        {"oneOf": [_set(f, json_type) for f in fields]},
    )


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _operator_rules(model: type[BaseModel], gt_lt: bool) -> tuple[Rule, ...]:
    rules = [
        Rule(
            model,
            "values",
            "operator In or NotIn needs values",
            "!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
            {
                "if": {"properties": {"operator": {"enum": ["In", "NotIn"]}}},
                "then": {"required": ["values"], "properties": {"values": {"minItems": 1}}},
            },
        ),
        Rule(
            model,
            "values",
            "operator Exists or DoesNotExist takes no values",
            "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || "
            "size(self.values) == 0",
            {
                "if": {"properties": {"operator": {"enum": ["Exists", "DoesNotExist"]}}},
                "then": {"properties": {"values": {"maxItems": 0}}},
            },
        ),
    ]
    if gt_lt:
        rules.append(
            Rule(
                model,
                "values",
                "operator Gt or Lt needs exactly one integer value",
                "!(self.operator in ['Gt', 'Lt']) || (has(self.values) && size(self.values) == 1"
                f" && self.values[0].matches('{INTEGER_PATTERN}'))",
                {
                    "if": {"properties": {"operator": {"enum": ["Gt", "Lt"]}}},
                    "then": {
                        "required": ["values"],
                        "properties": {
                            "values": {
                                "minItems": 1,
                                "maxItems": 1,
                                "items": {"pattern": INTEGER_PATTERN},
                            }
                        },
                    },
                },
            )
        )
    return tuple(rules)


_POD_RULES: tuple[Rule, ...] = (
    _exactly_one(EnvVarSource, ("secretKeyRef", "configMapKeyRef"), "object"),
    _exactly_one(EnvFromSource, ("secretRef", "configMapRef"), "object"),
    Rule(
        Toleration,
        "value",
        "a toleration with operator Exists takes no value",
        "!(has(self.operator) && self.operator == 'Exists') || !has(self.value) || "
        "size(self.value) == 0",
        {
            "if": {"required": ["operator"], "properties": {"operator": {"const": "Exists"}}},
            "then": {"properties": {"value": {"maxLength": 0}}},
        },
    ),
    Rule(
        Toleration,
        "operator",
        "a toleration without a key must use operator Exists",
        "has(self.key) || (has(self.operator) && self.operator == 'Exists')",
        {
            "if": {"properties": {"key": {"type": "null"}}},
            "then": {"required": ["operator"], "properties": {"operator": {"const": "Exists"}}},
        },
    ),
    Rule(
        Toleration,
        "tolerationSeconds",
        "tolerationSeconds only applies to effect NoExecute",
        "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
        {
            "if": _set("tolerationSeconds", "integer"),
            "then": {"required": ["effect"], "properties": {"effect": {"const": "NoExecute"}}},
        },
    ),
    *_operator_rules(LabelSelectorRequirement, gt_lt=False),
    *_operator_rules(NodeSelectorRequirement, gt_lt=True),
    _exactly_one(Volume, ("configMap", "secret", "persistentVolumeClaim", "emptyDir"), "object"),
    Rule(
        Volume,
        "name",
        f"volume names {', '.join(RESERVED_VOLUME_NAMES)} are kaip's own",
        f"!(self.name in {_cel_list(RESERVED_VOLUME_NAMES)})",
        {"properties": {"name": {"not": {"enum": list(RESERVED_VOLUME_NAMES)}}}},
    ),
    Rule(
        Volume,
        "mountPath",
        f"kaip mounts its own volumes at {', '.join(RESERVED_MOUNT_PATHS)}",
        f"!(self.mountPath in {_cel_list(RESERVED_MOUNT_PATHS)})",
        {"properties": {"mountPath": {"not": {"enum": list(RESERVED_MOUNT_PATHS)}}}},
    ),
    Rule(
        Volume,
        "readOnly",
        "ConfigMap and Secret volumes are always read-only",
        "!has(self.readOnly) || self.readOnly || (!has(self.configMap) && !has(self.secret))",
        {
            "if": {"required": ["readOnly"], "properties": {"readOnly": {"const": False}}},
            "then": {"not": {"anyOf": [_set("configMap", "object"), _set("secret", "object")]}},
        },
    ),
    Rule(
        PodOptions,
        "envValueFrom",
        "a variable is set in both env and envValueFrom",
        "!has(self.envValueFrom) || !has(self.env) || "
        "self.envValueFrom.all(name, !(name in self.env))",
        None,
    ),
    Rule(
        PodOptions,
        "volumes",
        "two volumes are mounted at the same mountPath",
        "!has(self.volumes) || "
        "self.volumes.all(a, self.volumes.exists_one(b, b.mountPath == a.mountPath))",
        None,
    ),
    Rule(
        PodOptions,
        "nodeSelector",
        f"nodeSelector's {GPU_PRODUCT_LABEL} differs from resources.gpuModel",
        f"!has(self.nodeSelector) || !('{GPU_PRODUCT_LABEL}' in self.nodeSelector) || "
        "!has(self.resources) || !has(self.resources.gpuModel) || "
        f"self.nodeSelector['{GPU_PRODUCT_LABEL}'] == self.resources.gpuModel",
        None,
    ),
)


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
        "unsupported URI scheme: use a relative path, file://, http://, https://, s3:// "
        "or registry://",
        f"!self.uri.contains('://') || self.uri.matches('{URI_SCHEME_PATTERN}')",
        {
            "properties": {
                "uri": {"anyOf": [{"not": {"pattern": "://"}}, {"pattern": URI_SCHEME_PATTERN}]}
            }
        },
    ),
    Rule(
        Artifact,
        "uri",
        "an http(s):// or s3:// URI must split into host, port and path: percent-encode [ ] in "
        "the path, and write the host as host, host:PORT or [IPv6]:PORT",
        # the apiserver's URL library (Go's net/url) where kaip splits with urllib: both reject
        # an unbalanced [ ] and a missing host; Go leaves the port's range to the rule
        "!(self.uri.startsWith('http://') || self.uri.startsWith('https://')"
        " || self.uri.startsWith('s3://')) || (isURL(self.uri)"
        " && url(self.uri).getHostname() != ''"
        " && (url(self.uri).getPort() == '' || int(url(self.uri).getPort()) <= 65535))",
        None,
    ),
    Rule(
        Artifact,
        "uri",
        "a registry:// URI names one version: registry://NAME@latest, @ALIAS or @N",
        f"!self.uri.startsWith('registry://') || self.uri.matches('{REGISTRY_URI_PATTERN}')",
        {
            "properties": {
                "uri": {
                    "anyOf": [
                        {"not": {"pattern": "^registry://"}},
                        {"pattern": REGISTRY_URI_PATTERN},
                    ]
                }
            }
        },
    ),
    Rule(
        Artifact,
        "uri",
        "an MLflow model URI is models:/NAME/VERSION or models:/NAME@ALIAS",
        f"!self.uri.startsWith('models:') || self.uri.matches('{MLFLOW_URI_PATTERN}')",
        {
            "properties": {
                "uri": {
                    "anyOf": [{"not": {"pattern": "^models:"}}, {"pattern": MLFLOW_URI_PATTERN}]
                }
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
    *_POD_RULES,
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


def _cel_text(text: str) -> str:
    """``text`` as a CEL string literal (double-quoted: kaip's messages hold apostrophes)."""
    if '"' in text or "\\" in text:
        raise ValueError(f"no CEL literal for {text!r}")
    return f'"{text}"'


def _repr_list(items: str, model: type[BaseModel], field: str) -> str:
    """CEL: the list of strings ``items`` (``model.field``, so bounded) written as Python's repr
    writes it. Spelled out for each length: the apiserver's cost estimate of ``map`` and
    ``join`` is far over its budget, whatever the bounds."""
    most = next(
        m.max_length for m in model.model_fields[field].metadata if hasattr(m, "max_length")
    )
    out = "'[]'"
    for n in range(most, 0, -1):
        quoted = " + \"', '\" + ".join(f"{items}[{i}]" for i in range(n))
        out = f'size({items}) == {n} ? "[\'" + {quoted} + "\']" : {out}'
    return f"({out})"


def _formats_text(engine: str) -> str:
    return " or ".join(repr(f) for f in ENGINE_FORMATS[engine])


def _by_engine(name: str, text: Callable[[str], str]) -> str:
    """CEL: ``text(engine)`` for the engine ``name`` holds (a literal for each one)."""
    *first, last = ENGINE_FORMATS
    out = _cel_text(text(last))
    for engine in reversed(first):
        out = f"{name} == '{engine}' ? {_cel_text(text(engine))} : {out}"
    return f"({out})"


_ENGINE_FORMATS_CEL = (
    "{" + ", ".join(f"'{e}': {_cel_list(f)}" for e, f in ENGINE_FORMATS.items()) + "}"
)

# serve.engine's checks (kaip.spec.engine, ModelSpec._engine_fits), each with the message kaip
# gives, built by messageExpression where kaip's names the flag, engine, format or protocols.
RULES += (
    Rule(
        Engine,
        "args",
        f"an argument {RESERVED_FLAG_MESSAGE} ({RESERVED_FLAG_HINT})",
        f"!has(self.args) || !self.args.exists(a, a.matches('{RESERVED_FLAG_PATTERN}'))",
        {"properties": {"args": {"items": {"not": {"pattern": RESERVED_FLAG_PATTERN}}}}},
        message_expression=(
            f"self.args.filter(a, a.matches('{RESERVED_FLAG_PATTERN}'))[0].find('^[^=]+') + "
            + _cel_text(f" {RESERVED_FLAG_MESSAGE} ({RESERVED_FLAG_HINT})")
        ),
    ),
    Rule(
        Serve,
        "protocols",
        f"serve.engine serves the OpenAI API only ({PROTOCOLS_HINT})",
        "!has(self.engine) || (has(self.protocols) && self.protocols == ['openai'])",
        {
            "if": _set("engine", "object"),
            "then": {"required": ["protocols"], "properties": {"protocols": {"const": ["openai"]}}},
        },
        message_expression=(
            '"serve.engine \'" + self.engine.name + "\' serves the OpenAI API only, and protocols '
            f'are " + (has(self.protocols) ? {_repr_list("self.protocols", Serve, "protocols")} : '
            f"{_cel_text(repr(Serve().protocols))}) + " + _cel_text(f" ({PROTOCOLS_HINT})")
        ),
    ),
    Rule(
        ModelSpec,
        "artifact.format",
        f"serve.engine cannot load this artifact format ({FORMAT_HINT})",
        "!has(self.serve) || !has(self.serve.engine) || "
        f"self.artifact.format in {_ENGINE_FORMATS_CEL}[self.serve.engine.name]",
        {
            "allOf": [
                {
                    "if": {  # serve and engine objects (null is their absence)
                        "required": ["serve"],
                        "properties": {
                            "serve": {
                                "type": "object",
                                "required": ["engine"],
                                "properties": {
                                    "engine": {
                                        "type": "object",
                                        "required": ["name"],
                                        "properties": {"name": {"const": engine}},
                                    }
                                },
                            }
                        },
                    },
                    "then": {
                        "properties": {
                            "artifact": {"properties": {"format": {"enum": list(formats)}}}
                        }
                    },
                }
                for engine, formats in ENGINE_FORMATS.items()
            ]
        },
        message_expression=(
            '"engine \'" + self.serve.engine.name + "\' loads format " + '
            + _by_engine("self.serve.engine.name", _formats_text)
            + ' + ", not \'" + self.artifact.format + '
            + _cel_text(f"' ({FORMAT_HINT})")
        ),
    ),
)

NAME_CEL = f"size(self.metadata.name) <= 63 && self.metadata.name.matches('{NAME_PATTERN}')"
"""On the CRD's root: a kaip resource's name is an RFC 1123 label (it names Services)."""


def rules_for(model: type[BaseModel]) -> list[Rule]:
    """The rules of ``model``, including those of its bases (each kind's spec is PodOptions)."""
    return [r for r in RULES if issubclass(model, r.model)]

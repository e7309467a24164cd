"""Hypothesis strategies for valid kaip resources, built from the spec models' own constraints.

Bounds (ge/gt/le/lt, lengths) are read from the pydantic fields, patterns from the constants
the models use, so a tightened model tightens the generated data with it. The cross-field rules
(minReplicas <= maxReplicas, increasing weights, pickles pinned, ...) are met by construction.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import annotated_types as at
from hypothesis import strategies as st
from pydantic import BaseModel

from kaip.spec import App, Model, TrainingJob
from kaip.spec.base import (
    NAME_PATTERN,
    QUANTITY_PATTERN,
    SLO,
    Resources,
    Scaling,
)
from kaip.spec.engine import ENGINE_FORMATS
from kaip.spec.kinds import (
    CLAIM_NAME_PATTERN,
    CODE_FORMATS,
    ENTRYPOINT_PATTERN,
    SHA256_PATTERN,
    AppSpec,
    Batching,
    Serve,
    TrainingJobSpec,
)
from kaip.spec.rollout import Gates, RolloutStep

Doc = dict[str, Any]

# Text a person could type on one line: no control characters, no surrogates.
TEXT = st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs"))


def _bound(model: type[BaseModel], name: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in model.model_fields[name].metadata:
        for attr in ("ge", "gt", "le", "lt", "min_length", "max_length"):
            value = getattr(item, attr, None)
            if value is not None and isinstance(item, at.BaseMetadata):
                found[attr] = value
    return found


def int_range(model: type[BaseModel], name: str, cap: int = 10**6) -> tuple[int, int]:
    b = _bound(model, name)
    low = b.get("ge", b["gt"] + 1 if "gt" in b else -cap)
    high = b.get("le", b["lt"] - 1 if "lt" in b else cap)
    return low, high


def ints(model: type[BaseModel], name: str) -> st.SearchStrategy[int]:
    low, high = int_range(model, name)
    return st.integers(min_value=low, max_value=high)


def floats(model: type[BaseModel], name: str, cap: float = 1e9) -> st.SearchStrategy[float]:
    b = _bound(model, name)
    low = b.get("ge", b.get("gt", -cap))
    high = b.get("le", b.get("lt", cap))
    return st.floats(
        min_value=low,
        max_value=high,
        exclude_min="gt" in b,
        exclude_max="lt" in b,
        allow_nan=False,
        allow_infinity=False,
    ).filter(math.isfinite)


def text(model: type[BaseModel], name: str, default_max: int = 40) -> st.SearchStrategy[str]:
    b = _bound(model, name)
    return st.text(TEXT, min_size=b.get("min_length", 0), max_size=b.get("max_length", default_max))


def _maybe(doc: Doc, key: str, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Doc]:
    """``doc`` with ``key`` set from ``strategy`` or left out (to take its default)."""
    return st.one_of(st.just(doc), strategy.map(lambda v: {**doc, key: v}))


def _optional(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Doc]:
    """A mapping where each key may be present or absent."""
    return st.fixed_dictionaries({}, optional=fields)


names = st.from_regex(NAME_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 63)
quantities = st.one_of(
    st.from_regex(QUANTITY_PATTERN, fullmatch=True), st.integers(min_value=0, max_value=10**12)
)
_label_name = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?", fullmatch=True)
_label_key = st.one_of(_label_name, st.builds(lambda p, n: f"{p}.dev/{n}", names, _label_name))
labels = st.dictionaries(_label_key, st.one_of(st.just(""), _label_name), max_size=3)
annotations = st.dictionaries(_label_key, st.text(TEXT, max_size=20), max_size=3)


def metadata() -> st.SearchStrategy[Doc]:
    return st.builds(
        lambda name, extra: {"name": name, **extra},
        names,
        _optional({"namespace": names, "labels": labels, "annotations": annotations}),
    )


@st.composite
def resources(draw: st.DrawFn) -> Doc:
    doc = draw(_optional({"cpu": quantities, "memory": quantities, "gpu": ints(Resources, "gpu")}))
    if doc.get("gpu", 0) >= 1 and draw(st.booleans()):
        doc["gpuModel"] = draw(text(Resources, "gpu_model"))
    return doc


@st.composite
def scaling(draw: st.DrawFn) -> Doc:
    low = draw(ints(Scaling, "min_replicas"))
    floor, ceiling = int_range(Scaling, "max_replicas")
    high = draw(st.integers(min_value=max(low, floor), max_value=ceiling))
    doc: Doc = {"minReplicas": low, "maxReplicas": high}
    doc |= draw(
        _optional(
            {
                "targetConcurrency": floats(Scaling, "target_concurrency"),
                "scaleToZeroAfterSeconds": floats(Scaling, "scale_to_zero_after_seconds"),
            }
        )
    )
    return doc


@st.composite
def rollout(draw: st.DrawFn) -> Doc:
    weights = draw(
        st.lists(ints(RolloutStep, "weight"), min_size=1, max_size=6, unique=True).map(sorted)
    )
    pauses = st.one_of(st.none(), floats(RolloutStep, "pause_seconds"))
    steps = []
    for weight in weights:
        pause = draw(pauses)
        steps.append(
            {"weight": weight} if pause is None else {"weight": weight, "pauseSeconds": pause}
        )
    gates = _optional(
        {
            "maxErrorRate": floats(Gates, "max_error_rate"),
            "maxP99LatencyMs": floats(Gates, "max_p99_latency_ms"),
            "minRequests": ints(Gates, "min_requests"),
        }
    )
    doc: Doc = {"steps": steps}
    return doc | draw(
        _optional({"strategy": st.sampled_from(["canary", "replace"]), "gates": gates})
    )


@st.composite
def artifact(draw: st.DrawFn) -> Doc:
    fmt = draw(
        st.sampled_from(
            ["sklearn", "onnx", "python", "sentence-transformers", "transformers", "gguf"]
        )
    )
    scheme = draw(st.sampled_from(["", "file://", "http://", "https://", "s3://"]))
    path = draw(st.text(TEXT, min_size=1, max_size=30).filter(lambda s: "://" not in s))
    if scheme.startswith(("http", "s3")):  # a URL names its host (or bucket) before the path
        path = (
            draw(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)) + "/" + path
        )
    doc: Doc = {"uri": scheme + path, "format": fmt}
    sha = st.from_regex(SHA256_PATTERN, fullmatch=True)
    if fmt in CODE_FORMATS and scheme == "http://":  # code over plain http needs a digest
        doc |= draw(sha.map(lambda s: {"sha256": s}))
    elif fmt in CODE_FORMATS:
        doc |= draw(st.one_of(sha.map(lambda s: {"sha256": s}), st.just({"trust": True})))
    else:
        doc |= draw(_optional({"sha256": sha, "trust": st.booleans()}))
    if fmt == "python":
        doc["entrypoint"] = draw(st.from_regex(ENTRYPOINT_PATTERN, fullmatch=True))
    if not scheme and not path.startswith("/"):  # a claim holds relative paths only
        claim = st.from_regex(CLAIM_NAME_PATTERN, fullmatch=True).filter(lambda n: len(n) <= 253)
        doc |= draw(_optional({"pvc": claim.map(lambda n: {"claimName": n})}))
    return doc


def serve() -> st.SearchStrategy[Doc]:
    protocols = st.lists(st.sampled_from(["oip-v2", "openai"]), min_size=1, max_size=2, unique=True)
    batching = _optional(
        {
            "maxBatchSize": ints(Batching, "max_batch_size"),
            "maxDelayMs": floats(Batching, "max_delay_ms"),
        }
    )
    return _optional(
        {
            "protocols": protocols,
            "batching": batching,
            "timeoutSeconds": floats(Serve, "timeout_seconds"),
            "maxRequestBytes": ints(Serve, "max_request_bytes"),
            "maxTokens": ints(Serve, "max_tokens"),
            "image": text(Serve, "image"),
        }
    )


def slo() -> st.SearchStrategy[Doc]:
    return _optional(
        {
            "p99LatencyMs": floats(SLO, "p99_latency_ms"),
            "availability": floats(SLO, "availability"),
        }
    )


_CIDRS = [("10.0.0.0/8", ["10.1.0.0/16"]), ("0.0.0.0/0", ["169.254.0.0/16", "10.0.0.0/8"]),
          ("fd00::/8", ["fd00:ec2::/32"]), ("192.168.1.7/32", [])]  # fmt: skip


def _peer(egress: bool) -> st.SearchStrategy[Doc]:
    cidr = st.sampled_from(_CIDRS).flatmap(
        lambda pair: st.one_of(
            st.just({"cidr": pair[0]}),
            st.just({"cidr": pair[0], "except": pair[1]}) if pair[1] else st.nothing(),
        )
    )
    pods = st.one_of(
        st.builds(lambda ns: {"namespace": ns}, names),
        st.builds(lambda lb: {"podLabels": lb}, labels),
        st.builds(lambda ns, lb: {"namespace": ns, "podLabels": lb}, names, labels),
    )
    peer = st.one_of(st.builds(lambda n: {"resource": n}, names), pods, cidr)
    if not egress:
        return peer
    ports = st.lists(st.integers(min_value=1, max_value=65535), min_size=1, max_size=3)
    return st.builds(lambda p, extra: {**p, **extra}, peer, _optional({"ports": ports}))


def network() -> st.SearchStrategy[Doc]:
    return _optional(
        {
            "allowFrom": st.lists(_peer(egress=False), max_size=3),
            "allowTo": st.lists(_peer(egress=True), max_size=3),
        }
    )


owners = text(AppSpec, "owner")
argv = st.lists(st.text(TEXT, max_size=15), min_size=1, max_size=4)
env = st.dictionaries(
    st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True), st.text(TEXT, max_size=15), max_size=3
)


_object_names = st.from_regex(
    r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?(\.[a-z0-9]{1,5})?", fullmatch=True
)
_keys = st.from_regex(r"[-._a-zA-Z0-9]{1,12}", fullmatch=True)
_paths = st.lists(
    st.from_regex(r"[a-z][-a-z0-9_.]{0,8}", fullmatch=True), min_size=1, max_size=3
).map(lambda parts: "/" + "/".join(parts))


def _one_of_refs(kinds: tuple[str, str], ref: st.SearchStrategy[Doc]) -> st.SearchStrategy[Doc]:
    return st.builds(lambda kind, r: {kind: r}, st.sampled_from(kinds), ref)


_key_ref = st.builds(
    lambda name, key, extra: {"name": name, "key": key, **extra},
    _object_names,
    _keys,
    _optional({"optional": st.booleans()}),
)
_object_ref = st.builds(
    lambda name, extra: {"name": name, **extra},
    _object_names,
    _optional({"optional": st.booleans()}),
)
env_refs = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),  # lower case: never also in env
    _one_of_refs(("secretKeyRef", "configMapKeyRef"), _key_ref),
    max_size=2,
)
env_from = st.lists(
    st.builds(
        lambda ref, extra: {**ref, **extra},
        _one_of_refs(("secretRef", "configMapRef"), _object_ref),
        _optional({"prefix": st.from_regex(r"[A-Z_]{1,6}", fullmatch=True)}),
    ),
    max_size=2,
)


@st.composite
def toleration(draw: st.DrawFn) -> Doc:
    doc: Doc = {}
    if draw(st.booleans()):
        doc["key"] = draw(_label_key)
        operator = draw(st.sampled_from(["Exists", "Equal", None]))
        if operator is not None:
            doc["operator"] = operator
        if operator != "Exists" and draw(st.booleans()):
            doc["value"] = draw(_label_name)
    else:
        doc["operator"] = "Exists"
    effect = draw(st.sampled_from([None, "NoSchedule", "PreferNoSchedule", "NoExecute"]))
    if effect is not None:
        doc["effect"] = effect
    if effect == "NoExecute" and draw(st.booleans()):
        doc["tolerationSeconds"] = draw(st.integers(min_value=0, max_value=3600))
    return doc


@st.composite
def requirement(draw: st.DrawFn, node: bool) -> Doc:
    operators = ["In", "NotIn", "Exists", "DoesNotExist"] + (["Gt", "Lt"] if node else [])
    operator = draw(st.sampled_from(operators))
    doc: Doc = {"key": draw(_label_key), "operator": operator}
    if operator in ("In", "NotIn"):
        doc["values"] = draw(st.lists(_label_name, min_size=1, max_size=3))
    elif operator in ("Gt", "Lt"):
        doc["values"] = [str(draw(st.integers(min_value=-5, max_value=100)))]
    return doc


def _label_selector() -> st.SearchStrategy[Doc]:
    return _optional(
        {
            "matchLabels": labels,
            "matchExpressions": st.lists(requirement(node=False), max_size=2),
        }
    )


def affinity() -> st.SearchStrategy[Doc]:
    term = _optional({"matchExpressions": st.lists(requirement(node=True), max_size=2)})
    node = _optional(
        {
            "requiredDuringSchedulingIgnoredDuringExecution": st.builds(
                lambda terms: {"nodeSelectorTerms": terms}, st.lists(term, min_size=1, max_size=2)
            ),
            "preferredDuringSchedulingIgnoredDuringExecution": st.lists(
                st.builds(
                    lambda w, t: {"weight": w, "preference": t},
                    st.integers(min_value=1, max_value=100),
                    term,
                ),
                max_size=2,
            ),
        }
    )
    pod_term = st.builds(
        lambda key, extra: {"topologyKey": key, **extra},
        _label_key,
        _optional({"labelSelector": _label_selector(), "namespaces": st.lists(names, max_size=2)}),
    )
    pod = _optional(
        {
            "requiredDuringSchedulingIgnoredDuringExecution": st.lists(pod_term, max_size=2),
            "preferredDuringSchedulingIgnoredDuringExecution": st.lists(
                st.builds(
                    lambda w, t: {"weight": w, "podAffinityTerm": t},
                    st.integers(min_value=1, max_value=100),
                    pod_term,
                ),
                max_size=2,
            ),
        }
    )
    return _optional({"nodeAffinity": node, "podAffinity": pod, "podAntiAffinity": pod})


@st.composite
def volumes(draw: st.DrawFn) -> list[Doc]:
    count = draw(st.integers(min_value=0, max_value=3))
    vols_names = draw(
        st.lists(
            names.filter(lambda n: n not in ("tmp", "spec", "artifacts", "checkpoints")),
            min_size=count,
            max_size=count,
            unique=True,
        )
    )
    mounts = draw(
        st.lists(
            _paths.filter(lambda p: p not in ("/tmp",)), min_size=count, max_size=count, unique=True
        )
    )
    out = []
    for name, mount in zip(vols_names, mounts, strict=True):
        source = draw(st.sampled_from(["configMap", "secret", "persistentVolumeClaim", "emptyDir"]))
        doc: Doc = {"name": name, "mountPath": mount}
        if source == "configMap":
            doc["configMap"] = {"name": draw(_object_names)}
        elif source == "secret":
            doc["secret"] = {"secretName": draw(_object_names)}
        elif source == "persistentVolumeClaim":
            doc["persistentVolumeClaim"] = {"claimName": draw(_object_names)}
            if draw(st.booleans()):
                doc["readOnly"] = draw(st.booleans())
        else:
            doc["emptyDir"] = draw(
                _optional({"medium": st.sampled_from(["", "Memory"]), "sizeLimit": quantities})
            )
        if source != "emptyDir" and draw(st.booleans()):
            doc["readOnly"] = True
        out.append(doc)
    return out


def pod_options() -> dict[str, st.SearchStrategy[Any]]:
    """The pod-level fields every kind shares (kaip.spec.pod), each optional."""
    return {
        "env": env,
        "envValueFrom": env_refs,
        "envFrom": env_from,
        "nodeSelector": labels,
        "tolerations": st.lists(toleration(), max_size=2),
        "affinity": affinity(),
        "volumes": volumes(),
        "serviceAccountName": _object_names,
        "priorityClassName": _object_names,
        "imagePullSecrets": st.lists(_object_names, max_size=2),
    }


def _resource(kind: str, spec: st.SearchStrategy[Doc]) -> st.SearchStrategy[Doc]:
    return st.builds(
        lambda meta, body: {
            "apiVersion": "kaip.dev/v1alpha1",
            "kind": kind,
            "metadata": meta,
            "spec": body,
        },
        metadata(),
        spec,
    )


# Engine arguments, some only looking like the flags kaip sets (--hostname, -ab, --port2)
ENGINE_ARGS = ["--max-model-len", "4096", "--tp=2", "--hostname", "-ab", "--port2", "--n_ctx"]


@st.composite
def _with_engine(draw: st.DrawFn, spec: Doc) -> Doc:
    """``spec``, or it served by an engine that loads its artifact's format (protocols [openai])."""
    names = [e for e, formats in ENGINE_FORMATS.items() if spec["artifact"]["format"] in formats]
    if not names or not draw(st.sampled_from([True, True, False])):
        return spec
    engine: Doc = {"name": draw(st.sampled_from(names))}
    args = draw(st.lists(st.sampled_from(ENGINE_ARGS), max_size=4))
    if args:
        engine["args"] = args
    return {**spec, "serve": {**spec.get("serve", {}), "protocols": ["openai"], "engine": engine}}


def model_docs() -> st.SearchStrategy[Doc]:
    spec = st.builds(
        lambda owner, art, extra: {"owner": owner, "artifact": art, **extra},
        owners,
        artifact(),
        _optional(
            {
                "serve": serve(),
                "resources": resources(),
                "scaling": scaling(),
                "rollout": rollout(),
                "slo": slo(),
                "network": network(),
                **pod_options(),
            }
        ),
    ).flatmap(_with_engine)
    return _resource("Model", spec)


@st.composite
def app_spec(draw: st.DrawFn) -> Doc:
    runs = draw(st.sampled_from([("command",), ("image",), ("command", "image")]))
    doc: Doc = {"owner": draw(owners)}
    if "command" in runs:
        doc["command"] = draw(argv)
    if "image" in runs:
        doc["image"] = draw(text(AppSpec, "image"))
    return doc | draw(
        _optional(
            {
                "port": ints(AppSpec, "port"),
                **pod_options(),
                "healthPath": st.text(TEXT, max_size=20).map(lambda s: "/" + s),
                "resources": resources(),
                "scaling": scaling(),
                "rollout": rollout(),
                "network": network(),
            }
        )
    )


def training_spec() -> st.SearchStrategy[Doc]:
    output = st.builds(
        lambda uri, fmt, extra: {"uri": uri, "format": fmt, **extra},
        st.text(TEXT, min_size=1, max_size=30),
        st.sampled_from(
            ["sklearn", "onnx", "python", "sentence-transformers", "transformers", "gguf"]
        ),
        _optional({"model": names}),
    )
    return st.builds(
        lambda owner, command, extra: {"owner": owner, "command": command, **extra},
        owners,
        argv,
        _optional(
            {
                "image": text(TrainingJobSpec, "image"),
                **pod_options(),
                "resources": resources(),
                "nodes": ints(TrainingJobSpec, "nodes"),
                "maxRetries": ints(TrainingJobSpec, "max_retries"),
                "checkpointDir": st.text(TEXT, max_size=20),
                "output": output,
            }
        ),
    )


def documents() -> st.SearchStrategy[Doc]:
    """A valid kaip document of any kind, as YAML would hold it."""
    return st.one_of(
        model_docs(),
        _resource("App", app_spec()),
        _resource("TrainingJob", training_spec()),
    )


KIND_MODELS = {"Model": Model, "App": App, "TrainingJob": TrainingJob}


# Mutations: small steps away from a valid document, for the agreement tests.


def paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*path, index))
    return found


def parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


def neighbours(value: Any) -> list[Any]:
    """Values one small step from ``value``: a flipped flag, a bound crossed, a type changed."""
    if isinstance(value, bool):
        return [not value, None, str(value).lower()]
    if isinstance(value, int):
        return [value - 1, value + 1, -value - 1, value * 1000, value + 0.5, str(value)]
    if isinstance(value, float):
        near = [value * 2, -value, value + 1.25, value - 1.25, value / 3]
        return [v for v in near if not v.is_integer()] + [str(value), None]
    if isinstance(value, str):
        return ["", value.upper(), value + "_", "-" + value, value + "://x", "ftp://" + value]
    if isinstance(value, list):
        return [[], value + value, value[::-1], value[:1] * 2]
    if isinstance(value, dict):
        return [{}, list(value.values())]
    return [0]


def variants(doc: Any, path: tuple[Any, ...]) -> list[Any]:
    """``doc`` with the node at ``path`` replaced by each neighbour, dropped, or given a key."""
    out = []
    current = parent(doc, path)[path[-1]] if path else doc
    for value in neighbours(current):
        edited = copy.deepcopy(doc)
        if not path:
            out.append(value)
            continue
        parent(edited, path)[path[-1]] = value
        out.append(edited)
    if path and isinstance(parent(doc, path), dict):
        edited = copy.deepcopy(doc)
        del parent(edited, path)[path[-1]]
        out.append(edited)
    if isinstance(current, dict):
        edited = copy.deepcopy(doc)
        target = parent(edited, path)[path[-1]] if path else edited
        target["extra"] = "x"
        out.append(edited)
    return out

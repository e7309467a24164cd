"""The three kinds of a kaip spec: ``Model``, ``App`` and ``TrainingJob``.

The same models are the local spec (``kaip up``) and the custom resources the operator
reconciles (``kaip crd`` generates the CRDs from them). Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from kaip.spec.base import (
    API_VERSION,
    SLO,
    FieldProblem,
    Name,
    ObjectMeta,
    Owner,
    Resources,
    Scaling,
    SpecModel,
    ValueProblem,
)
from kaip.spec.engine import FORMAT_HINT, PROTOCOLS_HINT, Engine, engine_format_problem
from kaip.spec.network import Network
from kaip.spec.pod import PodOptions
from kaip.spec.rollout import Rollout

ArtifactFormat = Literal[
    "sklearn", "onnx", "python", "sentence-transformers", "transformers", "gguf"
]
PICKLE_FORMATS: frozenset[str] = frozenset({"sklearn"})
CODE_FORMATS: frozenset[str] = PICKLE_FORMATS | {"python"}
"""Formats whose loading runs code from the artifact: unpickling, or importing the user's class.
They need ``sha256`` or ``trust: true``, and over plain ``http://`` a ``sha256``."""
URI_SCHEMES = ("file://", "http://", "https://", "s3://", "registry://")
URI_SCHEME_PATTERN = r"^(file|https?|s3|registry)://"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
ENTRYPOINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"
REGISTRY_URI_PATTERN = r"^registry://([a-z0-9]([-a-z0-9]*[a-z0-9])?)@([A-Za-z0-9][-A-Za-z0-9_]*)$"
"""``registry://NAME@latest``, ``registry://NAME@ALIAS`` or ``registry://NAME@N`` (a version)."""
MLFLOW_URI_PATTERN = r"^models:/([^/@]+)(/([0-9]+)|@([A-Za-z0-9][-A-Za-z0-9_]*))$"
"""MLflow's model URIs: ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""
_SHA256 = re.compile(SHA256_PATTERN)
_ENTRYPOINT = re.compile(ENTRYPOINT_PATTERN)
_REGISTRY_URI = re.compile(REGISTRY_URI_PATTERN)
_MLFLOW_URI = re.compile(MLFLOW_URI_PATTERN)
_URI_HINT = (
    "use a relative path, file://, http://, https://, s3://, registry://NAME@latest "
    "or models:/NAME/VERSION"
)


def _url_problem(uri: str) -> str | None:
    """What keeps ``uri`` (http, https, s3) from being split into host, port and path, if any."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError as exc:
        return str(exc)
    return None if parts.hostname else "it names no host"


def registry_reference(uri: str) -> tuple[str, str] | None:
    """``(name, selector)`` of a registered version's URI, None for any other URI.

    ``registry://NAME@SELECTOR`` (kaip's registry) or ``models:/NAME/VERSION|@ALIAS`` (MLflow's):
    the selector is a version number, an alias, or ``latest`` (the newest version).
    """
    match = _REGISTRY_URI.fullmatch(uri)
    if match:
        return (match.group(1), match.group(3))
    return mlflow_reference(uri)


def mlflow_reference(uri: str) -> tuple[str, str] | None:
    """``(name, selector)`` of ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""
    match = _MLFLOW_URI.fullmatch(uri)
    if not match:
        return None
    return (match.group(1), match.group(3) or match.group(4))


CLAIM_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_CLAIM_NAME = re.compile(CLAIM_NAME_PATTERN)


def _check_claim_name(value: str) -> str:
    if len(value) > 253 or not _CLAIM_NAME.fullmatch(value):
        raise ValueProblem(
            f"{value!r} is not a PersistentVolumeClaim name",
            "at most 253 lower-case letters, digits, '-' and '.', starting and ending with a "
            "letter or digit",
        )
    return value


class ArtifactClaim(SpecModel):
    """A PersistentVolumeClaim holding the artifact on Kubernetes, mounted read-only."""

    claim_name: Annotated[str, AfterValidator(_check_claim_name)] = Field(
        json_schema_extra={"pattern": CLAIM_NAME_PATTERN, "maxLength": 253},
        description=(
            "a PersistentVolumeClaim in the Model's namespace; mounted read-only at "
            "/var/lib/kaip/artifacts, where uri is read (relative to the claim's root)"
        ),
    )


class Artifact(SpecModel):
    """Where a model's files are and how to load them."""

    uri: str = Field(
        min_length=1,
        max_length=2048,
        description=(
            "path relative to the spec file, file://, http(s)://, s3://, "
            "registry://NAME@latest|@ALIAS|@N (kaip's registry) or models:/NAME/VERSION|@ALIAS "
            "(MLflow)"
        ),
    )
    format: ArtifactFormat
    sha256: str | None = Field(
        None,
        description="hex digest the artifact must match",
        json_schema_extra={"pattern": SHA256_PATTERN},
    )
    trust: bool = Field(
        False,
        description="load a code artifact (a pickle, format python) without a digest; it runs code",
    )
    entrypoint: str | None = Field(
        None,
        description="module:Class, for format python",
        json_schema_extra={"pattern": ENTRYPOINT_PATTERN},
    )
    pvc: ArtifactClaim | None = Field(
        None,
        description=(
            "on Kubernetes, the claim that holds the artifact (uri relative to its root), "
            "mounted read-only; locally uri stays relative to the spec file"
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> Artifact:
        if self.uri.startswith("gs://"):
            raise FieldProblem(
                "uri",
                "gs:// is not supported",
                "use s3:// with GCS's S3-compatible endpoint (AWS_ENDPOINT_URL_S3="
                "https://storage.googleapis.com and HMAC keys), or https:// with a sha256",
            )
        if "://" in self.uri and not self.uri.startswith(URI_SCHEMES):
            scheme = self.uri.split("://", 1)[0]
            raise FieldProblem("uri", f"unsupported scheme {scheme!r}", _URI_HINT)
        if self.uri.startswith(("http://", "https://", "s3://")):
            problem = _url_problem(self.uri)
            if problem is not None:
                raise FieldProblem(
                    "uri",
                    f"{self.uri!r} is not a URL kaip can fetch: {problem}",
                    "percent-encode characters such as [ ] in the path, and write the host as "
                    "host, host:PORT or [IPv6]:PORT",
                )
        if self.uri.startswith("registry://") and not _REGISTRY_URI.fullmatch(self.uri):
            raise FieldProblem(
                "uri",
                f"{self.uri!r} is not a registry reference",
                "write registry://NAME@latest, registry://NAME@ALIAS or registry://NAME@3",
            )
        if self.uri.startswith("models:") and not _MLFLOW_URI.fullmatch(self.uri):
            raise FieldProblem(
                "uri",
                f"{self.uri!r} is not an MLflow model URI",
                "write models:/NAME/VERSION or models:/NAME@ALIAS",
            )
        if self.pvc is not None and ("://" in self.uri or self.uri.startswith("/")):
            raise FieldProblem(
                "pvc",
                f"pvc holds the artifact at a path relative to the claim's root, but uri is "
                f"{self.uri!r}",
                "write uri as the path inside the claim, e.g. models/m.onnx; or remove pvc: "
                "a remote uri is downloaded into the pod",
            )
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise FieldProblem(
                "sha256",
                "must be 64 lower-case hex characters",
                "the output of sha256sum FILE",
            )
        if self.format == "python":
            if self.entrypoint is None:
                raise FieldProblem(
                    "entrypoint", "format 'python' needs an entrypoint", "entrypoint: module:Class"
                )
            if not _ENTRYPOINT.fullmatch(self.entrypoint):
                raise FieldProblem(
                    "entrypoint",
                    f"{self.entrypoint!r} is not an entrypoint",
                    "write module:Class, e.g. my_pkg.model:Predictor",
                )
        elif self.entrypoint is not None:
            raise FieldProblem(
                "entrypoint",
                f"entrypoint is only used with format 'python', not {self.format!r}",
                "remove it",
            )
        if self.format in CODE_FORMATS and self.sha256 is None:
            if not self.trust:
                raise FieldProblem("sha256", _runs_code(self.format), _PIN_OR_TRUST)
            if self.uri.startswith("http://"):
                raise FieldProblem(
                    "sha256",
                    f"{_runs_code(self.format)}, and over plain http:// anyone on the path can "
                    "swap the file",
                    "pin it with sha256 or serve it over https://; trust: true trusts the "
                    "author, not the network",
                )
        return self

    @property
    def is_pickle(self) -> bool:
        return self.format in PICKLE_FORMATS

    @property
    def runs_code(self) -> bool:
        """Loading it runs code from the artifact (see :data:`CODE_FORMATS`)."""
        return self.format in CODE_FORMATS

    @property
    def from_registry(self) -> bool:
        """Whether the artifact is a version in kaip's registry or in MLflow's."""
        return self.uri.startswith(("registry://", "models:"))


_PIN_OR_TRUST = "pin it with sha256: <the output of sha256sum FILE>, or set trust: true"


def _runs_code(fmt: str) -> str:
    if fmt in PICKLE_FORMATS:
        return f"format {fmt!r} is a pickle and unpickling runs code"
    return f"format {fmt!r} imports and runs the artifact's code"


Protocol = Literal["oip-v2", "openai"]
DEFAULT_MAX_TOKENS = 4096


class Batching(SpecModel):
    """Adaptive batching: wait at most ``maxDelayMs`` to fill up to ``maxBatchSize`` rows."""

    max_batch_size: int = Field(64, ge=1, le=65536)
    max_delay_ms: float = Field(2.0, ge=0, le=10_000)


def _default_protocols() -> list[Protocol]:
    return ["oip-v2"]


SERVED_NAME_PATTERN = r"^[A-Za-z0-9_][-A-Za-z0-9_.:@+~]*(/[A-Za-z0-9_][-A-Za-z0-9_.:@+~]*)*$"
SERVED_NAME_MAX = 256
_SERVED_NAME = re.compile(SERVED_NAME_PATTERN)


def _check_served_name(value: str) -> str:
    if len(value) > SERVED_NAME_MAX:
        raise ValueProblem(f"must be at most {SERVED_NAME_MAX} characters (got {len(value)})")
    if not _SERVED_NAME.fullmatch(value):
        raise ValueProblem(
            f"{value!r} is not a served model name",
            "use letters, digits and - _ . : @ + ~, in segments separated by single '/', each "
            "starting with a letter, digit or '_' (e.g. meta-llama/Llama-3.1-8B-Instruct)",
        )
    return value


ServedName = Annotated[
    str,
    AfterValidator(_check_served_name),
    Field(json_schema_extra={"pattern": SERVED_NAME_PATTERN, "maxLength": SERVED_NAME_MAX}),
]


def names_clash(a: str, b: str) -> bool:
    """Would a request path for one of two served names be ambiguous with the other?

    Equal names clash, and so does a name that is a whole-segment prefix of the other (``a`` and
    ``a/infer``): ``/v2/models/a/infer`` could mean either.
    """
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def first_clash(
    owners: Iterable[tuple[str, Iterable[str]]],
) -> tuple[str, str, str, str] | None:
    """``(owner, name, other owner, other's name)`` for the first served names of two owners
    that clash (see :func:`names_clash`), or None."""
    seen: list[tuple[str, str]] = []
    for owner, names in owners:
        mine = list(dict.fromkeys(names))
        for name in mine:
            for other, taken in seen:
                if names_clash(name, taken):
                    return owner, name, other, taken
        seen.extend((owner, name) for name in mine)
    return None


class Serve(SpecModel):
    """How the model server exposes the model."""

    protocols: list[Protocol] = Field(
        default_factory=_default_protocols, min_length=1, max_length=2
    )
    names: list[ServedName] | None = Field(
        None,  # not [] : a field that dumps as a default would change every revision id
        min_length=1,
        max_length=16,
        description="the names clients use for the model over OIP v2 and OpenAI, any of them "
        "(default: metadata.name); unique in the namespace",
        json_schema_extra={"uniqueItems": True, "x-kubernetes-list-type": "set"},
    )
    # None (left out) means least-request, and keeps every existing spec's revision id.
    routing: Literal["least-request", "prefix-affinity"] | None = Field(
        None,
        description=(
            "how the gateway picks a replica: least-request (default), or prefix-affinity "
            "(OpenAI requests sharing a long prompt prefix go to the replica likely to hold it "
            "in its KV cache, unless it is much busier); on Kubernetes, prefix-affinity also "
            "renders an InferencePool of the Model's pods and its endpoint picker (Gateway API "
            "Inference Extension)"
        ),
    )
    batching: Batching = Field(default_factory=Batching)
    timeout_seconds: float = Field(30.0, gt=0, le=3600)
    max_request_bytes: int = Field(8 * 2**20, ge=1024, le=2**31)
    # None (left out) means DEFAULT_MAX_TOKENS: a new optional field keeps every existing
    # spec's revision id, so upgrading kaip does not roll out every Model again.
    max_tokens: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description=(
            "the most tokens one completion may ask for (OpenAI max_tokens); more is a 400. "
            "Default 4096"
        ),
    )

    image: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="model-server image on Kubernetes (default: settings.kube.image); it must "
        "run python -m kaip.serving, e.g. one built FROM kaip's image",
    )
    engine: Engine | None = Field(
        None,
        description="serve with an inference engine's own OpenAI server (vllm, sglang, "
        "llama-server) that kaip's replica starts on loopback and relays /v1/* to; needs "
        "protocols: [openai]",
    )

    @property
    def token_cap(self) -> int:
        """``maxTokens``, or :data:`DEFAULT_MAX_TOKENS` when the spec leaves it out."""
        return DEFAULT_MAX_TOKENS if self.max_tokens is None else self.max_tokens

    @model_validator(mode="after")
    def _distinct_names(self) -> Serve:
        names = self.names or []
        for i, name in enumerate(names):
            for other in names[:i]:
                if names_clash(name, other):
                    same = "is listed twice" if name == other else f"overlaps {other!r}"
                    raise FieldProblem(
                        "names",
                        f"served name {name!r} {same}",
                        "a name may not repeat or be another name followed by '/...'",
                    )
        return self


_NETWORK = (
    "on Kubernetes: callers allowed besides the ingress namespaces, and destinations besides "
    "DNS; everything else is denied"
)


MAX_METRICS = 32
MAX_METRIC_NAME = 128


class QualityGate(SpecModel):
    """What a registered version must have reported before it may take any traffic.

    Judged on the metrics the training run reported (``KAIP_METRIC`` lines), before a canary
    starts: a version that fails, or lacks a metric named here, is refused and never served.
    """

    min_metric: dict[str, float] = Field(
        default_factory=dict, max_length=MAX_METRICS, description="metric -> lowest value allowed"
    )
    max_metric: dict[str, float] = Field(
        default_factory=dict, max_length=MAX_METRICS, description="metric -> highest value allowed"
    )

    @model_validator(mode="after")
    def _names(self) -> QualityGate:
        for field, bounds in (("minMetric", self.min_metric), ("maxMetric", self.max_metric)):
            for name in bounds:
                if not 0 < len(name) <= MAX_METRIC_NAME:
                    raise FieldProblem(
                        field,
                        f"metric name {name[:40]!r} must be 1 to {MAX_METRIC_NAME} characters",
                        "use the name the job reports in its KAIP_METRIC lines",
                    )
        return self


class ModelSpec(PodOptions):
    """What a Model serves, for whom, on what, and how new revisions roll out."""

    owner: Owner
    artifact: Artifact
    # promotion and qualityGate: None (left out) means auto / no gate. New optional fields keep
    # every existing spec's revision id, so upgrading kaip does not roll out every Model again.
    promotion: Literal["auto", "manual"] | None = Field(
        None,
        description=(
            "auto (default): a newly registered version the artifact selects "
            "(registry://NAME@latest or an alias) becomes a new revision by itself; manual: only "
            "on kaip deploy / kaip up"
        ),
    )
    quality_gate: QualityGate | None = Field(
        None, description="bounds on the training run's metrics a version must meet to serve"
    )
    serve: Serve = Field(default_factory=Serve)
    resources: Resources = Field(default_factory=Resources)
    scaling: Scaling = Field(default_factory=Scaling)
    rollout: Rollout = Field(default_factory=Rollout)
    slo: SLO = Field(default_factory=SLO)
    network: Network | None = Field(None, description=_NETWORK)

    @model_validator(mode="after")
    def _engine_fits(self) -> ModelSpec:
        engine = self.serve.engine
        if engine is None:
            return self
        if self.serve.protocols != ["openai"]:
            raise FieldProblem(
                ("serve", "protocols"),
                f"serve.engine {engine.name!r} serves the OpenAI API only, and protocols are "
                f"{self.serve.protocols}",
                PROTOCOLS_HINT,
            )
        problem = engine_format_problem(engine, self.artifact.format)
        if problem is not None:
            raise FieldProblem(("artifact", "format"), problem, FORMAT_HINT)
        return self


class Model(SpecModel):
    """A model served by the kaip model server (Open Inference Protocol v2 and/or OpenAI)."""

    api_version: Literal["kaip.dev/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["Model"] = "Model"
    metadata: ObjectMeta
    spec: ModelSpec

    @property
    def served_names(self) -> tuple[str, ...]:
        """The names clients reach the model by: ``serve.names``, else ``metadata.name``."""
        return tuple(self.spec.serve.names or ()) or (self.metadata.name,)


def _check_health_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueProblem("must start with '/'", f"write '/{value}'")
    return value


class AppSpec(PodOptions):
    """What an App runs (a command locally, an image on Kubernetes) and how it scales."""

    owner: Owner
    command: list[str] | None = Field(
        None, min_length=1, description="argv run locally; PORT is set in its environment"
    )
    image: str | None = Field(None, min_length=1, description="container image on Kubernetes")
    port: int = Field(8080, ge=1, le=65535)
    health_path: Annotated[str, AfterValidator(_check_health_path)] = Field(
        "/healthz",
        description="HTTP path that answers 200 when the app is ready",
        json_schema_extra={"pattern": "^/"},
    )
    resources: Resources = Field(default_factory=Resources)
    scaling: Scaling = Field(default_factory=Scaling)
    rollout: Rollout = Field(default_factory=Rollout)
    network: Network | None = Field(None, description=_NETWORK)

    @model_validator(mode="after")
    def _runnable(self) -> AppSpec:
        if self.command is None and self.image is None:
            raise FieldProblem(
                "command",
                "an App needs command or image",
                "command runs it locally, image on Kubernetes; set one or both",
            )
        if self.scaling.target_kv_cache_usage is not None:
            raise FieldProblem(
                "scaling",
                "targetKvCacheUsage is for Models: an App exports no KV-cache use to scale on",
                "remove scaling.targetKvCacheUsage (an App scales on CPU)",
            )
        return self


class App(SpecModel):
    """A generic web service deployed next to the models (an API, a UI, an agent)."""

    api_version: Literal["kaip.dev/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["App"] = "App"
    metadata: ObjectMeta
    spec: AppSpec


class TrainingOutput(SpecModel):
    """The artifact a training job writes, and the Model it feeds.

    No digest here: it is known only once the job has run.
    """

    uri: str = Field(
        min_length=1,
        max_length=2048,
        description="where the job writes its artifact (KAIP_OUTPUT_URI): a file path, or s3://",
    )
    format: ArtifactFormat
    model: Name | None = Field(
        None,
        description=(
            "name of the Model this artifact feeds: each successful run registers a version "
            "under this name (else the job's), and a Model reading registry://NAME@latest rolls "
            "it out"
        ),
    )


class TrainingJobSpec(PodOptions):
    """What a training run executes, on how many nodes, and what it produces."""

    owner: Owner
    command: list[str] = Field(min_length=1)
    image: str | None = Field(None, min_length=1)
    resources: Resources = Field(default_factory=Resources)
    nodes: int = Field(1, ge=1, le=1024)
    max_retries: int = Field(3, ge=0, le=100)
    checkpoint_dir: str | None = Field(
        None,
        max_length=4096,
        description="where the job keeps checkpoints; a retry is told the newest one",
    )
    inputs: list[Annotated[str, Field(min_length=1, max_length=2048)]] | None = Field(
        None,
        max_length=32,
        description="URIs of the datasets the job reads (for lineage: OpenLineage inputs)",
    )
    output: TrainingOutput | None = None


class TrainingJob(SpecModel):
    """A batch training run; its output artifact can feed a Model."""

    api_version: Literal["kaip.dev/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["TrainingJob"] = "TrainingJob"
    metadata: ObjectMeta
    spec: TrainingJobSpec


Resource = Model | App | TrainingJob
KINDS: dict[str, type[Model] | type[App] | type[TrainingJob]] = {
    "Model": Model,
    "App": App,
    "TrainingJob": TrainingJob,
}

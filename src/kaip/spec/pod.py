"""Pod-level fields of Model, App and TrainingJob: what a platform engineer sets on a pod.

Environment variables (literal, or from a Secret or ConfigMap key, or every key of one),
scheduling (``nodeSelector``, ``tolerations``, ``affinity``, ``priorityClassName``), volumes
with their mount (a safe subset: ConfigMap, Secret, PersistentVolumeClaim, emptyDir; read-only
unless it is scratch space), ``serviceAccountName`` and ``imagePullSecrets``. Names and shapes
are the Kubernetes ones (``secretKeyRef``, ``tolerationSeconds``,
``requiredDuringSchedulingIgnoredDuringExecution``) so a YAML snippet from a Deployment fits;
only environment variables keep kaip's map form (``env: {NAME: value}``), and a volume carries
its own ``mountPath`` (one container per pod, so one mount per volume).

Everything here is rendered into the pod on Kubernetes (:mod:`kaip.render.kube.pod_options`).
Locally (``kaip up``) there is no Secret, ConfigMap, node or volume: a variable from a reference
must come from ``kaip up``'s own environment (:mod:`kaip.plan.local_gaps` says which are
missing), and the rest is reported as not applied. Pure: models and checks, no I/O.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import AfterValidator, Field, model_validator

from kaip.spec.base import (
    KEY_PATTERN,
    FieldProblem,
    Labels,
    Name,
    Quantity,
    Resources,
    SpecModel,
    ValueProblem,
)

# -- names --------------------------------------------------------------------------------

DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME_PATTERN: Final = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
CONFIG_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"
_SEGMENT: Final = r"([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)"
MOUNT_PATH_PATTERN: Final = rf"^(/{_SEGMENT})+$"
"""Absolute, no empty, ``.`` or ``..`` segment, no trailing slash."""
SUB_PATH_PATTERN: Final = rf"^{_SEGMENT}(/{_SEGMENT})*$"
GPU_PRODUCT_LABEL: Final = "nvidia.com/gpu.product"
RESERVED_MOUNT_PATHS: Final = ("/tmp", "/etc/kaip", "/var/lib/kaip/artifacts")
"""Where kaip mounts its own volumes (scratch, the pod-local spec, the artifact cache)."""
RESERVED_VOLUME_NAMES: Final = ("tmp", "spec", "artifacts", "checkpoints")
MAX_ITEMS: Final = 64
MAX_TERMS: Final = 16
"""Affinity terms and expressions: nested lists, whose CEL rules' cost the apiserver bounds."""
MAX_ENV: Final = 256
MAX_LABELS: Final = 64


def _pattern(pattern: str, what: str, hint: str) -> AfterValidator:
    """Check a string against ``pattern``, in kaip's words when it does not match."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueProblem(f"{value!r} is not {what}", hint)
        return value

    return AfterValidator(check)


def _bounds(pattern: str, min_length: int, max_length: int) -> Any:
    return Field(
        min_length=min_length, max_length=max_length, json_schema_extra={"pattern": pattern}
    )


_NAME_HINT: Final = (
    "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
)
DnsName = Annotated[
    str,
    _bounds(DNS_SUBDOMAIN_PATTERN, 1, 253),
    _pattern(DNS_SUBDOMAIN_PATTERN, "a Kubernetes object name", _NAME_HINT),
]
"""A Kubernetes object name (Secret, ConfigMap, PVC, ServiceAccount, PriorityClass)."""
ConfigKey = Annotated[
    str,
    _bounds(CONFIG_KEY_PATTERN, 1, 253),
    _pattern(CONFIG_KEY_PATTERN, "a ConfigMap or Secret key", "letters, digits, '-', '_', '.'"),
]
EnvName = Annotated[
    str,
    _bounds(ENV_NAME_PATTERN, 1, 253),
    _pattern(
        ENV_NAME_PATTERN,
        "an environment variable name",
        "letters, digits, '_', '-' and '.', not starting with a digit",
    ),
]
QualifiedKey = Annotated[
    str,
    _bounds(KEY_PATTERN, 1, 253 + 1 + 63),
    _pattern(
        KEY_PATTERN,
        "a label or taint key",
        "a name of letters, digits, '-', '_' or '.', optionally prefixed 'example.com/'",
    ),
]
"""A label or taint key: ``name`` or ``prefix/name``."""
LABEL_VALUE_PATTERN: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LabelValue = Annotated[
    str,
    _bounds(LABEL_VALUE_PATTERN, 0, 63),
    _pattern(
        LABEL_VALUE_PATTERN,
        "a label value",
        "letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    ),
]
MountPath = Annotated[
    str,
    _bounds(MOUNT_PATH_PATTERN, 2, 1024),
    _pattern(
        MOUNT_PATH_PATTERN,
        "an absolute path",
        "start with '/', no '.' or '..' segments, no '//' and no trailing '/'",
    ),
]
SubPath = Annotated[
    str,
    _bounds(SUB_PATH_PATTERN, 1, 1024),
    _pattern(
        SUB_PATH_PATTERN,
        "a path inside the volume",
        "relative (no leading '/'), no '.' or '..' segments, no '//' and no trailing '/'",
    ),
]


def _exactly_one(model: SpecModel, fields: tuple[str, ...]) -> None:
    """``model`` sets exactly one of ``fields`` (Python names); else a located problem."""
    info = type(model).model_fields
    spelled = [info[f].alias or f for f in fields]
    chosen = [
        alias for f, alias in zip(fields, spelled, strict=True) if getattr(model, f) is not None
    ]
    if len(chosen) != 1:
        found = "none" if not chosen else " and ".join(chosen)
        raise FieldProblem(
            chosen[-1] if chosen else spelled[0],
            f"set exactly one of {', '.join(spelled)} (found {found})",
            "split it into two entries" if chosen else f"add one, e.g. {spelled[0]}: ...",
        )


# -- environment --------------------------------------------------------------------------


class KeyRef(SpecModel):
    """One key of a Secret or ConfigMap in the resource's namespace."""

    name: DnsName
    key: ConfigKey
    optional: bool = Field(False, description="start even if the object or key is missing")


class EnvVarSource(SpecModel):
    """Where one environment variable's value comes from (exactly one of the two)."""

    secret_key_ref: KeyRef | None = None
    config_map_key_ref: KeyRef | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        _exactly_one(self, ("secret_key_ref", "config_map_key_ref"))
        return self

    @property
    def ref(self) -> KeyRef:
        ref = self.secret_key_ref or self.config_map_key_ref
        assert ref is not None  # _one_source
        return ref

    @property
    def kind(self) -> str:
        return "Secret" if self.secret_key_ref is not None else "ConfigMap"


class ObjectRef(SpecModel):
    """A whole Secret or ConfigMap in the resource's namespace."""

    name: DnsName
    optional: bool = Field(False, description="start even if the object is missing")


class EnvFromSource(SpecModel):
    """Every key of a Secret or ConfigMap as an environment variable (exactly one of the two)."""

    secret_ref: ObjectRef | None = None
    config_map_ref: ObjectRef | None = None
    prefix: EnvName | None = Field(None, description="put in front of every key")

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        _exactly_one(self, ("secret_ref", "config_map_ref"))
        return self

    @property
    def ref(self) -> ObjectRef:
        ref = self.secret_ref or self.config_map_ref
        assert ref is not None  # _one_source
        return ref

    @property
    def kind(self) -> str:
        return "Secret" if self.secret_ref is not None else "ConfigMap"


_V = TypeVar("_V")
_ENV_NAME: Final = re.compile(ENV_NAME_PATTERN)


def _check_env_names(env: dict[str, _V]) -> dict[str, _V]:
    for name in env:
        if not _ENV_NAME.fullmatch(name) or len(name) > 253:
            raise ValueProblem(
                f"{name!r} is not an environment variable name",
                "letters, digits, '_', '-' and '.', not starting with a digit",
            )
    return env


_ENV_NAMES: Final = {"propertyNames": {"pattern": ENV_NAME_PATTERN, "maxLength": 253}}
Env = Annotated[
    dict[str, str], AfterValidator(_check_env_names), Field(json_schema_extra=_ENV_NAMES)
]
EnvRefs = Annotated[
    dict[str, EnvVarSource], AfterValidator(_check_env_names), Field(json_schema_extra=_ENV_NAMES)
]

# -- scheduling ---------------------------------------------------------------------------


class Toleration(SpecModel):
    """Lets pods land on nodes with a matching taint (GPU nodes are usually tainted)."""

    key: QualifiedKey | None = Field(None, description="taint key; empty with Exists: any taint")
    operator: Literal["Exists", "Equal"] = "Equal"
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="empty: every effect"
    )
    toleration_seconds: int | None = Field(
        None, ge=0, le=10**9, description="NoExecute only: how long the pod stays once tainted"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise FieldProblem(
                "value", "a toleration with operator Exists takes no value", "remove value"
            )
        if self.key is None and self.operator != "Exists":
            raise FieldProblem(
                "operator",
                "a toleration without a key must use operator Exists (it tolerates every taint)",
                "set key, or operator: Exists",
            )
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise FieldProblem(
                "tolerationSeconds",
                "tolerationSeconds only applies to effect NoExecute",
                "set effect: NoExecute or remove tolerationSeconds",
            )
        return self


class LabelSelectorRequirement(SpecModel):
    key: QualifiedKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[LabelValue] = Field(default_factory=list, max_length=MAX_TERMS)

    @model_validator(mode="after")
    def _values_fit(self) -> LabelSelectorRequirement:
        _check_values(self.operator, self.values)
        return self


class NodeSelectorRequirement(SpecModel):
    key: QualifiedKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, max_length=MAX_TERMS
    )

    @model_validator(mode="after")
    def _values_fit(self) -> NodeSelectorRequirement:
        _check_values(self.operator, self.values)
        return self


INTEGER_PATTERN: Final = r"^-?[0-9]+$"
_INTEGER: Final = re.compile(INTEGER_PATTERN)


def _check_values(operator: str, values: list[str]) -> None:
    if operator in ("In", "NotIn") and not values:
        raise FieldProblem("values", f"operator {operator} needs values", "list at least one")
    if operator in ("Exists", "DoesNotExist") and values:
        raise FieldProblem("values", f"operator {operator} takes no values", "remove values")
    if operator in ("Gt", "Lt") and (len(values) != 1 or not _INTEGER.fullmatch(values[0])):
        raise FieldProblem(
            "values", f"operator {operator} needs exactly one integer value", "e.g. values: ['4']"
        )


class LabelSelector(SpecModel):
    match_labels: Labels = Field(default_factory=dict, max_length=MAX_LABELS)
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=MAX_TERMS
    )


class NodeSelectorTerm(SpecModel):
    match_expressions: list[NodeSelectorRequirement] = Field(
        default_factory=list, max_length=MAX_TERMS
    )
    match_fields: list[NodeSelectorRequirement] = Field(default_factory=list, max_length=MAX_TERMS)


class NodeSelector(SpecModel):
    node_selector_terms: list[NodeSelectorTerm] = Field(min_length=1, max_length=MAX_TERMS)


class PreferredSchedulingTerm(SpecModel):
    weight: int = Field(ge=1, le=100)
    preference: NodeSelectorTerm


class NodeAffinity(SpecModel):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(
        default_factory=list, max_length=MAX_TERMS
    )


class PodAffinityTerm(SpecModel):
    label_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    namespaces: list[Name] = Field(default_factory=list, max_length=MAX_TERMS)
    topology_key: QualifiedKey


class WeightedPodAffinityTerm(SpecModel):
    weight: int = Field(ge=1, le=100)
    pod_affinity_term: PodAffinityTerm


class PodAffinity(SpecModel):
    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = Field(
        default_factory=list, max_length=MAX_TERMS
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] = Field(
        default_factory=list, max_length=MAX_TERMS
    )


class Affinity(SpecModel):
    """Node and pod (anti-)affinity, as in a pod spec."""

    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None


# -- volumes ------------------------------------------------------------------------------


class KeyToPath(SpecModel):
    key: ConfigKey
    path: SubPath


class ConfigMapVolume(SpecModel):
    name: DnsName
    optional: bool = False
    items: list[KeyToPath] = Field(default_factory=list, max_length=MAX_ITEMS)


class SecretVolume(SpecModel):
    secret_name: DnsName
    optional: bool = False
    items: list[KeyToPath] = Field(default_factory=list, max_length=MAX_ITEMS)


class ClaimVolume(SpecModel):
    claim_name: DnsName


class EmptyDirVolume(SpecModel):
    medium: Literal["", "Memory"] = ""
    size_limit: Quantity | None = None


class Volume(SpecModel):
    """One volume and where the workload's container sees it.

    ConfigMaps and Secrets are always read-only; a PersistentVolumeClaim is read-only unless
    ``readOnly: false``; an emptyDir is scratch space and writable.
    """

    name: Name
    mount_path: MountPath
    sub_path: SubPath | None = Field(None, description="mount this path of the volume only")
    read_only: bool | None = Field(
        None, description="default: true, except for emptyDir; ConfigMap and Secret always true"
    )
    config_map: ConfigMapVolume | None = None
    secret: SecretVolume | None = None
    persistent_volume_claim: ClaimVolume | None = None
    empty_dir: EmptyDirVolume | None = None

    @model_validator(mode="after")
    def _check(self) -> Volume:
        _exactly_one(self, ("config_map", "secret", "persistent_volume_claim", "empty_dir"))
        if self.name in RESERVED_VOLUME_NAMES:
            raise FieldProblem(
                "name",
                f"volume name {self.name!r} is kaip's own",
                f"pick another name (kaip uses {', '.join(RESERVED_VOLUME_NAMES)})",
            )
        if self.mount_path in RESERVED_MOUNT_PATHS:
            raise FieldProblem(
                "mountPath",
                f"{self.mount_path} is where kaip mounts its own volume",
                "mount it elsewhere, e.g. under /mnt or /etc/<app>",
            )
        if self.read_only is False and (self.config_map or self.secret):
            raise FieldProblem(
                "readOnly",
                "ConfigMap and Secret volumes are always read-only",
                "remove readOnly: false; write to an emptyDir instead",
            )
        return self

    @property
    def source(self) -> str:
        """The source's Kubernetes field name, e.g. ``configMap``."""
        for field in ("config_map", "secret", "persistent_volume_claim", "empty_dir"):
            if getattr(self, field) is not None:
                return str(type(self).model_fields[field].alias)
        raise AssertionError("no source")  # pragma: no cover - _check guarantees one

    @property
    def mounted_read_only(self) -> bool:
        if self.read_only is not None:
            return self.read_only
        return self.empty_dir is None


# -- the fields every kind shares ---------------------------------------------------------


class PodOptions(SpecModel):
    """Pod-level fields of Model, App and TrainingJob (a base class of each kind's spec)."""

    env: Env = Field(
        default_factory=dict,
        max_length=MAX_ENV,
        description="environment variables, literal values",
    )
    env_value_from: EnvRefs = Field(
        default_factory=dict,
        max_length=MAX_ENV,
        description="environment variables from a Secret or ConfigMap key (Kubernetes); "
        "locally taken from kaip up's own environment",
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list,
        max_length=MAX_ITEMS,
        description="every key of a Secret or ConfigMap as a variable (Kubernetes only)",
    )
    node_selector: Labels = Field(
        default_factory=dict, max_length=MAX_LABELS, description="node labels to match"
    )
    tolerations: list[Toleration] = Field(default_factory=list, max_length=MAX_ITEMS)
    affinity: Affinity | None = None
    volumes: list[Volume] = Field(
        default_factory=list,
        max_length=MAX_ITEMS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    service_account_name: DnsName | None = Field(
        None, description="run pods as this existing ServiceAccount (its token is mounted)"
    )
    priority_class_name: DnsName | None = None
    image_pull_secrets: list[DnsName] = Field(
        default_factory=list,
        max_length=MAX_ITEMS,
        description="names of Secrets with registry credentials",
    )

    @model_validator(mode="after")
    def _pod_consistent(self) -> PodOptions:
        for name in self.env_value_from:
            if name in self.env:
                raise FieldProblem(
                    ("envValueFrom", name),
                    f"{name} is set in both env and envValueFrom",
                    "keep one of the two",
                )
        names: set[str] = set()
        paths: set[str] = set()
        for index, volume in enumerate(self.volumes):
            if volume.name in names:
                raise FieldProblem(
                    ("volumes", index, "name"),
                    f"volume name {volume.name!r} is used twice",
                    "give each volume its own name",
                )
            if volume.mount_path in paths:
                raise FieldProblem(
                    ("volumes", index, "mountPath"),
                    f"two volumes are mounted at {volume.mount_path}",
                    "give each volume its own mountPath",
                )
            names.add(volume.name)
            paths.add(volume.mount_path)
        # Every kind's spec has resources; a GPU model selects nodes by the same label.
        resources = getattr(self, "resources", None)
        wanted = self.node_selector.get(GPU_PRODUCT_LABEL)
        gpu_model = resources.gpu_model if isinstance(resources, Resources) else None
        if gpu_model and wanted is not None and wanted != gpu_model:
            raise FieldProblem(
                ("nodeSelector", GPU_PRODUCT_LABEL),
                f"selects {wanted!r} but resources.gpuModel is {gpu_model!r}",
                "keep one of the two; gpuModel already selects the GPU product",
            )
        return self


__all__ = [
    "Affinity",
    "EnvFromSource",
    "EnvVarSource",
    "KeyRef",
    "PodOptions",
    "Toleration",
    "Volume",
]

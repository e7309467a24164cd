"""The one settings object of kaip.

Settings come from ``KAIP_*`` environment variables (nested groups with ``__``, e.g.
``KAIP_SERVING__HOST``). They are read once, by the entrypoint, with :func:`load_settings`, and
passed down; no module reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HttpLimits(_Group):
    """What one client connection may cost a server: both the model server and the gateway.

    Over ``max_header_bytes`` a request gets 431 and its connection is closed; a request whose
    headers (or body) have not all arrived within ``header_timeout_seconds`` (or
    ``body_timeout_seconds`` after its headers) gets 408 and is closed; a kept-alive connection
    with no request for ``idle_timeout_seconds`` is closed. At ``max_connections`` (lowered to
    what the process's open-file limit allows) a new connection closes the longest-idle one, or
    gets 503 when every connection has a request in progress.
    """

    max_header_bytes: int = Field(
        64 * 1024, ge=1024, le=1024 * 1024, description="request line and headers, bytes"
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, le=3600, description="a request's first byte to its last header, s"
    )
    body_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="a request's last header to the end of its body, s"
    )
    idle_timeout_seconds: float = Field(
        5.0, gt=0, le=3600, description="a kept-alive connection with no request is closed, s"
    )
    max_connections: int = Field(
        1024, ge=8, le=1_000_000, description="open client connections per server"
    )


class ServingSettings(_Group):
    """Defaults of the model server (``kaip serve`` and replicas)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    graceful_shutdown_seconds: float = Field(10.0, ge=0, description="drain time on SIGTERM, s")
    drain_seconds: float = Field(
        3.0,
        ge=0,
        description="after SIGTERM, keep serving at most this long with 'Connection: close' "
        "(so keep-alive clients reconnect to another replica) before closing connections, s",
    )
    max_queue: int = Field(1024, ge=1, description="requests waiting for a batch before 503")
    compile_linear: bool = Field(
        True,
        description="serve recognised linear scikit-learn pipelines by compiled numpy arithmetic "
        "(kept only where it equals predict); false: always call the model's own predict",
    )
    artifact_cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "kaip" / "artifacts",
        description="where http(s) artifacts are downloaded to, by sha256",
    )
    generation_workers: int = Field(
        4, ge=1, le=256, description="threads that run text generation (OpenAI routes)"
    )
    http: HttpLimits = HttpLimits()
    artifact_max_bytes: int = Field(
        32 * 2**30, ge=1, description="an http(s) artifact larger than this is refused, bytes"
    )
    artifact_fetch_timeout_seconds: float = Field(
        3600.0, gt=0, description="an http(s) artifact download (redirects included) ends after, s"
    )


class LocalSettings(_Group):
    """The embedded local platform (``kaip up``)."""

    state_dir: Path = Path(".kaip")
    gateway_port: int = Field(8080, ge=0, le=65535)
    admin_port: int = Field(
        8081, ge=0, le=65535, description="the control port: admin API (and portal), never Apps"
    )
    allowed_hosts: tuple[str, ...] = Field(
        (), description="names besides localhost, 127.0.0.1 and [::1] the control port answers to"
    )
    tick_seconds: float = Field(1.0, gt=0, description="controller loop period, s")
    health_interval_seconds: float = Field(1.0, gt=0, description="health checks of ready replicas")
    stabilization_seconds: float = Field(30.0, ge=0, description="scale-down window, s")
    hold_timeout_seconds: float = Field(30.0, gt=0, description="held requests wait this long")
    response_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description=(
            "an App replica that sends no response head within this is given up on (504 or a "
            "retry elsewhere), s; Model replicas get their serve.timeoutSeconds + 5 s instead"
        ),
    )
    drain_seconds: float = Field(15.0, ge=0, description="SIGTERM to SIGKILL on replica stop")
    wall_clock_file: Path | None = Field(
        None,
        description=(
            "read the wall time that the state records (deployments, rollouts, events) from this "
            "file, seconds since the epoch, instead of the system clock: for delivery histories "
            "scripted through the CLI (tests, demos); step timing stays on the system clock"
        ),
    )
    app_max_request_bytes: int = Field(
        16 * 2**20,
        ge=1024,
        le=2**31,
        description="request bodies the gateway takes for an App (Models: serve.maxRequestBytes)",
    )
    gateway_http: HttpLimits = HttpLimits()


class KubeSettings(_Group):
    """Rendering and applying to Kubernetes."""

    image: str = "ghcr.io/kaip-dev/kaip-server:0.1.0"
    autoscaler: Literal["hpa", "keda"] = "hpa"
    kueue_queue: str | None = None
    jobset: bool = Field(
        False,
        description="render a TrainingJob with nodes > 1 as a JobSet (jobset.x-k8s.io/v1alpha2) "
        "instead of an Indexed Job; the operator turns it on when the cluster serves JobSet",
    )
    field_manager: str = "kaip"
    prometheus_url: str = Field(
        "http://prometheus-operated.monitoring.svc:9090",
        description="Prometheus that KEDA queries for in-flight requests",
    )
    ingress_namespaces: tuple[str, ...] = Field(
        ("monitoring",),
        description=(
            "namespaces whose pods may call every Model and App on its serving port (JSON list): "
            "your gateway or ingress controller's, and Prometheus's; all other callers must be "
            "named in the resource's spec.network.allowFrom"
        ),
    )
    inference_gateway: str | None = Field(
        None,
        max_length=253,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-.a-z0-9]*[a-z0-9])?$",
        description=(
            "the Gateway (NAME, or NAMESPACE/NAME) that routes Models with serve.routing: "
            "prefix-affinity: kaip attaches an HTTPRoute NAME-inference to it whose backendRefs "
            "are the Model's InferencePools, one per live revision during a canary, weighted as "
            "the rollout says (unset: one pool over every revision, and no route to it)"
        ),
    )
    dns_namespace: str = Field("kube-system", description="where cluster DNS runs (egress on 53)")
    dns_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"k8s-app": "kube-dns"},
        description="labels of the cluster DNS pods (JSON object)",
    )


class RegistrySettings(_Group):
    """Which model registry TrainingJobs register into and ``kaip models`` reads."""

    backend: Literal["embedded", "mlflow"] = Field(
        "embedded",
        description="embedded: kaip's own, under the state directory (registry://NAME@...); "
        "mlflow: an MLflow tracking server's model registry (models:/NAME/VERSION|@ALIAS)",
    )
    mlflow_uri: str | None = Field(
        None,
        max_length=2048,
        description="the MLflow tracking server's http(s):// URL (else MLFLOW_TRACKING_URI)",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KAIP_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    serving: ServingSettings = ServingSettings()
    local: LocalSettings = LocalSettings()
    kube: KubeSettings = KubeSettings()
    registry: RegistrySettings = RegistrySettings()


def load_settings() -> Settings:
    """Read the environment once; call this from an entrypoint only."""
    return Settings()

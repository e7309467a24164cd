"""``spec.network`` of a Model or App: who may call its pods, and where they may connect.

On Kubernetes kaip renders one NetworkPolicy per resource that denies by default in both
directions. Ingress to the serving port is open only to the namespaces the platform names
(``KAIP_KUBE__INGRESS_NAMESPACES``: the gateway's, Prometheus's) and to ``allowFrom``; egress
only to cluster DNS, to a remote artifact's port on public addresses (a Model that downloads
one), and to ``allowTo``. Each peer names exactly one of:

* ``resource``: the pods of a Model or App of the same namespace;
* ``namespace`` and/or ``podLabels``: every pod of a namespace, pods with these labels in this
  namespace, or both at once (pods with these labels in that namespace);
* ``cidr`` (with optional ``except`` blocks inside it): addresses, e.g. a database subnet.

``allowTo`` peers may narrow the TCP ``ports`` (default: any). Locally (``kaip up``) there is no
network policy and this section is not read. Pure: models and their checks, no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, Field, TypeAdapter, WithJsonSchema, model_validator

from kaip.spec.base import FieldProblem, Labels, Name, SpecModel, ValueProblem

MAX_PEERS = 32
CIDR_PATTERN = (
    r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$"
    r"|^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*/(12[0-8]|1[01][0-9]|[1-9]?[0-9])$"
)
_CIDR = re.compile(CIDR_PATTERN)


def _check_cidr(value: str) -> str:
    try:
        if not _CIDR.fullmatch(value):
            raise ValueError(value)
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueProblem(
            f"{value!r} is not an IP block in CIDR notation", "e.g. 10.0.0.0/8 or fd00::/8"
        ) from None
    return value


Cidr = Annotated[
    str,
    AfterValidator(_check_cidr),
    Field(json_schema_extra={"pattern": CIDR_PATTERN}, max_length=43),
]


MAX_POD_LABELS = 16


def _few_labels(labels: dict[str, str]) -> dict[str, str]:
    if len(labels) > MAX_POD_LABELS:
        raise ValueProblem(f"at most {MAX_POD_LABELS} labels (got {len(labels)})")
    return labels


PodLabels = Annotated[
    Labels,
    AfterValidator(_few_labels),
    WithJsonSchema({**TypeAdapter(Labels).json_schema(), "maxProperties": MAX_POD_LABELS}),
]


class Peer(SpecModel):
    """Pods or addresses on the other end: exactly one of resource, namespace and/or podLabels,
    or cidr."""

    resource: Name | None = Field(None, description="a Model or App of the same namespace")
    namespace: Name | None = Field(None, description="pods of this namespace (all, or podLabels)")
    pod_labels: PodLabels | None = Field(
        None, description="pods with these labels (in namespace, or this resource's own)"
    )
    cidr: Cidr | None = Field(None, description="an IP block, e.g. 10.0.0.0/8")
    except_: list[Cidr] | None = Field(
        None, alias="except", max_length=16, description="IP blocks inside cidr left out"
    )

    @model_validator(mode="after")
    def _one_kind_of_peer(self) -> Peer:
        named = [
            name
            for name, present in (
                ("resource", self.resource is not None),
                ("namespace/podLabels", self.namespace is not None or self.pod_labels is not None),
                ("cidr", self.cidr is not None),
            )
            if present
        ]
        if len(named) != 1:
            raise FieldProblem(
                "resource" if not named else named[-1].split("/")[0],
                "a peer names exactly one of resource, namespace/podLabels or cidr"
                + (f" (got {' and '.join(named)})" if named else ""),
                "write one peer per list entry",
            )
        if self.except_ is not None and self.cidr is None:
            raise FieldProblem("except", "except narrows a cidr, but this peer has none", "")
        if self.cidr is not None:
            outer = ipaddress.ip_network(self.cidr, strict=False)
            for inner_text in self.except_ or []:
                inner = ipaddress.ip_network(inner_text, strict=False)
                if inner.version != outer.version or not inner.subnet_of(outer):  # type: ignore[arg-type]
                    raise FieldProblem(
                        "except",
                        f"except block {inner_text} is not inside cidr {self.cidr}",
                        "list only blocks within the cidr",
                    )
        return self


Port = Annotated[int, Field(ge=1, le=65535)]


class EgressPeer(Peer):
    """Where the pods may connect: a peer, and the TCP ports there (default: any)."""

    ports: list[Port] | None = Field(None, min_length=1, max_length=16, description="TCP ports")


class Network(SpecModel):
    """Who may call this resource's pods and where they may connect, on Kubernetes."""

    allow_from: list[Peer] = Field(
        default_factory=list,
        max_length=MAX_PEERS,
        description="callers besides the platform's ingress namespaces",
    )
    allow_to: list[EgressPeer] = Field(
        default_factory=list,
        max_length=MAX_PEERS,
        description="destinations besides cluster DNS (and a remote artifact's host)",
    )

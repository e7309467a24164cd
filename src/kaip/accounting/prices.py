"""Prices per owner and per node type: the price table the kernel's callers resolve.

Owns the shape of a price config (a mapping, as read from YAML or JSON by the caller), its
validation with located errors, and the resolution of one :class:`Prices` for a replica from its
owner and the type of node it runs on. Never reads a file or the environment (``kaip up`` and
the operator read the file ``KAIP_COST_PRICES_FILE`` names, at most :data:`MAX_CONFIG_BYTES`,
and hand its bytes to :meth:`PriceBook.from_yaml`).

The config (USD per hour; every level names only the prices it changes)::

    default:   {cpuCoreHourUsd: 0.031611, ramGbHourUsd: 0.004237, gpuHourUsd: 0.95}
    nodeTypes: {m5.xlarge: {cpuCoreHourUsd: 0.048}}
    owners:    {team-a: {cpuCoreHourUsd: 0.05, gpuHourUsd: 2.5}}

Resolution, each later level over the earlier: the base prices (OpenCost's defaults, or the
``KAIP_COST_*_USD`` variables), ``default``, ``nodeTypes[node type]``, ``owners[owner]`` -- an
owner's rate (a negotiated or internal chargeback price) wins over the node's list price.

>>> book = PriceBook.from_config(
...     {"nodeTypes": {"big": {"cpuCoreHourUsd": 0.1}}, "owners": {"a": {"gpuHourUsd": 2}}}
... )
>>> p = book.resolve("a", "big")
>>> p.cpu_core_hour, p.ram_gb_hour, p.gpu_hour
(0.1, 0.004237, 2.0)
>>> book.resolve("b", None).cpu_core_hour
0.031611
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

import yaml

from kaip.accounting.coefficients import Prices

FIELDS: Final[dict[str, str]] = {
    "cpuCoreHourUsd": "cpu_core_hour",
    "ramGbHourUsd": "ram_gb_hour",
    "gpuHourUsd": "gpu_hour",
}
"""Config key -> :class:`Prices` field."""
SECTIONS: Final = ("default", "nodeTypes", "owners")
MAX_ENTRIES: Final = 1000
"""Owners or node types in one config."""
MAX_NAME_CHARS: Final = 253
MAX_PRICE_USD_PER_HOUR: Final = 1e6
MAX_CONFIG_BYTES: Final = 256 * 1024
"""The largest price file read (callers read at most one byte more, to tell)."""
PRICES_FILE_ENV: Final = "KAIP_COST_PRICES_FILE"
NODE_TYPE_ENV: Final = "KAIP_COST_NODE_TYPE"
"""Locally: the type of the one node ``kaip up`` runs on (``nodeTypes``' key)."""
INSTANCE_TYPE_LABEL: Final = "node.kubernetes.io/instance-type"
"""On Kubernetes: a resource's ``nodeSelector`` value for this well-known label is its node type."""


class PriceConfigError(ValueError):
    """A price config that cannot be used; ``where`` locates the value (``owners.a.gpuHourUsd``)."""

    def __init__(self, where: str, problem: str, fix: str) -> None:
        self.where, self.problem, self.fix = where, problem, fix
        super().__init__(f"{where}: {problem}; {fix}" if where else f"{problem}; {fix}")


Override = Mapping[str, float]
"""Some :class:`Prices` fields (``cpu_core_hour``...) and their values."""


@dataclass(frozen=True)
class PriceBook:
    """The base prices and the overrides of the config; :meth:`resolve` gives one replica's."""

    base: Prices = field(default_factory=Prices)
    default: Override = field(default_factory=dict)
    node_types: Mapping[str, Override] = field(default_factory=dict)
    owners: Mapping[str, Override] = field(default_factory=dict)
    source: str = ""
    """Where the overrides came from (the file), for the figures' ``source``."""

    @classmethod
    def from_yaml(cls, data: bytes, base: Prices | None = None, source: str = "") -> PriceBook:
        """A price file's bytes (YAML or JSON); :class:`PriceConfigError` says what is wrong
        and where (``line:column`` for bad YAML, the key path for a bad value)."""
        if len(data) > MAX_CONFIG_BYTES:
            raise PriceConfigError("", f"larger than {MAX_CONFIG_BYTES // 1024} KiB",
                                   "keep only the prices that differ from the default")  # fmt: skip
        try:
            config = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise PriceConfigError(at, getattr(exc, "problem", None) or "not valid YAML",
                                   "fix the YAML") from None  # fmt: skip
        return cls.from_config(config, base, source)

    @classmethod
    def from_config(cls, config: object, base: Prices | None = None, source: str = "") -> PriceBook:
        """Validate a parsed config (None or empty: no overrides); :class:`PriceConfigError`
        names the first bad value."""
        base = Prices() if base is None else base
        if config is None:
            return cls(base, source=source)
        if not isinstance(config, Mapping):
            raise PriceConfigError(
                "", "expected a mapping with default, nodeTypes and/or owners",
                "see docs/observability.md, 'Prices per owner and node type'",
            )  # fmt: skip
        for key in config:
            if key not in SECTIONS:
                raise PriceConfigError(str(key), "unknown key", f"use one of {', '.join(SECTIONS)}")
        default = _override(config.get("default"), "default")
        return cls(
            base,
            default,
            _named(config.get("nodeTypes"), "nodeTypes"),
            _named(config.get("owners"), "owners"),
            source,
        )

    def resolve(self, owner: str | None, node_type: str | None) -> Prices:
        """The prices of ``owner``'s replica on a node of ``node_type`` (either unknown: None)."""
        prices, used = self.base, []
        levels: list[tuple[str, Override | None]] = [
            ("default", self.default),
            (f"nodeTypes.{node_type}", self.node_types.get(node_type or "")),
            (f"owners.{owner}", self.owners.get(owner or "")),
        ]
        for name, override in levels:
            if override:
                prices = replace(
                    prices,
                    cpu_core_hour=override.get("cpu_core_hour", prices.cpu_core_hour),
                    ram_gb_hour=override.get("ram_gb_hour", prices.ram_gb_hour),
                    gpu_hour=override.get("gpu_hour", prices.gpu_hour),
                )
                used.append(name)
        if not used:
            return prices
        where = f"{self.source} " if self.source else ""
        return replace(
            prices, source=f"configured: {where}{', '.join(used)} over {self.base.source}"
        )

    def to_json(self) -> dict[str, object]:
        """The overrides as the config names them (for ``kaip cost -o json``)."""

        def named(o: Override) -> dict[str, float]:
            back = {v: k for k, v in FIELDS.items()}
            return {back[k]: v for k, v in o.items()}

        return {
            "source": self.source,
            "default": named(self.default),
            "nodeTypes": {k: named(v) for k, v in self.node_types.items()},
            "owners": {k: named(v) for k, v in self.owners.items()},
        }


def _named(value: object, where: str) -> dict[str, Override]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PriceConfigError(where, "expected a mapping of names to prices",
                               f"e.g. {where}: {{team-a: {{cpuCoreHourUsd: 0.05}}}}")  # fmt: skip
    if len(value) > MAX_ENTRIES:
        raise PriceConfigError(where, f"{len(value)} entries, at most {MAX_ENTRIES}",
                               "keep the prices that differ from the default")  # fmt: skip
    out: dict[str, Override] = {}
    for name, prices in value.items():
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
            raise PriceConfigError(
                f"{where}.{name}", f"expected a name of 1 to {MAX_NAME_CHARS} characters",
                "quote it as a string",
            )  # fmt: skip
        out[name] = _override(prices, f"{where}.{name}")
    return out


def _override(value: object, where: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PriceConfigError(where, "expected a mapping of prices",
                               f"e.g. {where}: {{cpuCoreHourUsd: 0.05}}")  # fmt: skip
    out: dict[str, float] = {}
    for key, price in value.items():
        if key not in FIELDS:
            raise PriceConfigError(f"{where}.{key}", "unknown price",
                                   f"use one of {', '.join(FIELDS)} (USD per hour)")  # fmt: skip
        if isinstance(price, str):  # helm --set gives decimals as strings: "0.05"
            with contextlib.suppress(ValueError):
                price = float(price)
        if isinstance(price, bool) or not isinstance(price, int | float):
            raise PriceConfigError(f"{where}.{key}", f"expected a number, got {price!r}",
                                   f"e.g. {key}: 0.05 (USD per hour)")  # fmt: skip
        if not (math.isfinite(price) and 0 <= price <= MAX_PRICE_USD_PER_HOUR):
            raise PriceConfigError(
                f"{where}.{key}", f"{price!r} is out of range",
                f"give 0 to {MAX_PRICE_USD_PER_HOUR:g} USD per hour",
            )  # fmt: skip
        out[FIELDS[key]] = float(price)
    return out

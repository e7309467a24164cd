"""Prices per owner and per node type (kaip.accounting.prices): resolution, located errors, and
the callers that resolve them -- kaip up's cost book and the operator's cost gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaip.accounting import Coefficients, PriceBook, PriceConfigError, Prices
from kaip.accounting.prices import INSTANCE_TYPE_LABEL
from kaip.cli.operator import _price_book
from kaip.errors import ConfigError
from kaip.kube.operator.canary import cost_evidence
from kaip.kube.operator.metrics import RevisionMetrics
from kaip.kube.operator.reconcile import parse, prices_of
from kaip.local.controller.costs import CostBook, ProcessUsage, ReplicaProcess, price_book_from
from kaip.local.gateway.signals import ReplicaBusy
from kaip.spec import Model
from kaip.spec.base import Resources

CONFIG = b"""\
default: {ramGbHourUsd: 0.01}
nodeTypes:
  m5.xlarge: {cpuCoreHourUsd: 0.048}
owners:
  team-a: {cpuCoreHourUsd: 0.5, gpuHourUsd: 2.5}
"""


def test_each_level_overrides_only_the_prices_it_names_owner_over_node_type() -> None:
    book = PriceBook.from_yaml(CONFIG, Prices(cpu_core_hour=0.03), "prices.yaml")
    base = book.resolve("team-b", None)
    assert (base.cpu_core_hour, base.ram_gb_hour, base.gpu_hour) == (0.03, 0.01, 0.95)
    node = book.resolve("team-b", "m5.xlarge")
    assert (node.cpu_core_hour, node.ram_gb_hour) == (0.048, 0.01)
    owner = book.resolve("team-a", "m5.xlarge")
    assert (owner.cpu_core_hour, owner.ram_gb_hour, owner.gpu_hour) == (0.5, 0.01, 2.5)
    assert owner.source.startswith("configured: prices.yaml default, nodeTypes.m5.xlarge, owners")
    assert PriceBook().resolve("anyone", "any") == Prices()  # no config: OpenCost's defaults
    assert PriceBook.from_yaml(b"").resolve("a", None) == Prices()
    quoted = PriceBook.from_yaml(b'owners: {a: {gpuHourUsd: "2.5"}}')  # as helm --set writes it
    assert quoted.resolve("a", None).gpu_hour == 2.5
    assert book.to_json()["owners"] == {"team-a": {"cpuCoreHourUsd": 0.5, "gpuHourUsd": 2.5}}


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        (b"owners: {team-a: {cpuCoreHourUsd: cheap}}", "owners.team-a.cpuCoreHourUsd",
         "expected a number, got 'cheap'"),
        (b"owners: {team-a: {cpuCoreHour: 1}}", "owners.team-a.cpuCoreHour", "unknown price"),
        (b"nodeTypes: {big: {gpuHourUsd: -1}}", "nodeTypes.big.gpuHourUsd", "out of range"),
        (b"nodeTypes: {big: {gpuHourUsd: .nan}}", "nodeTypes.big.gpuHourUsd", "out of range"),
        (b"owner: {a: {gpuHourUsd: 1}}", "owner", "unknown key"),
        (b"owners: [a, b]", "owners", "expected a mapping"),
        (b"default: {cpuCoreHourUsd: true}", "default.cpuCoreHourUsd", "expected a number"),
        (b"- 1\n- 2\n", "", "expected a mapping with default"),
        (b"owners: {a: {cpuCoreHourUsd: 1}\n", "line 2, column 1", "expected ','"),
    ],
)  # fmt: skip
def test_a_bad_price_config_is_refused_naming_where(text: bytes, where: str, says: str) -> None:
    with pytest.raises(PriceConfigError) as caught:
        PriceBook.from_yaml(text)
    assert caught.value.where == where and says in str(caught.value), str(caught.value)
    assert caught.value.fix  # and how to mend it


def test_price_configs_are_bounded() -> None:
    many = "owners:\n" + "".join(f"  o{i}: {{cpuCoreHourUsd: 1}}\n" for i in range(1001))
    with pytest.raises(PriceConfigError, match="1001 entries, at most 1000"):
        PriceBook.from_yaml(many.encode())
    with pytest.raises(PriceConfigError, match="larger than 256 KiB"):
        PriceBook.from_yaml(b"#" * (256 * 1024 + 1))


def write(tmp_path: Path, text: bytes) -> str:
    path = tmp_path / "prices.yaml"
    path.write_bytes(text)
    return str(path)


def test_kaip_up_reads_the_file_kaip_cost_prices_file_names(tmp_path: Path) -> None:
    base = Prices(cpu_core_hour=0.04)
    assert price_book_from({}, base).resolve("team-a", None) == base
    name = write(tmp_path, CONFIG)
    book = price_book_from({"KAIP_COST_PRICES_FILE": name}, base)
    assert book.resolve("team-a", None).cpu_core_hour == 0.5
    assert book.resolve("team-b", None).cpu_core_hour == 0.04  # KAIP_COST_* stay the base
    bad = write(tmp_path, b"owners: {team-a: {cpuCoreHourUsd: -2}}")
    with pytest.raises(ConfigError, match=r"prices.yaml: owners.team-a.cpuCoreHourUsd: -2 is out"):
        price_book_from({"KAIP_COST_PRICES_FILE": bad}, base)
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read it"):
        price_book_from({"KAIP_COST_PRICES_FILE": missing}, base)


def test_two_owners_with_different_prices_get_different_cost_figures() -> None:
    live = [
        ReplicaProcess("model", "a", "1", "team-a", "a-1", 11, 1.0),
        ReplicaProcess("model", "b", "1", "team-b", "b-1", 12, 1.0),
    ]
    usage = {11: ProcessUsage(100.0, 10.0, 0.5), 12: ProcessUsage(100.0, 10.0, 0.5)}
    busy = {"a-1": ReplicaBusy(20.0, 50), "b-1": ReplicaBusy(20.0, 50)}  # the same work
    dear = {"cpuCoreHourUsd": 0.031611 * 10, "ramGbHourUsd": 0.004237 * 10}
    prices = PriceBook.from_config({"owners": {"team-a": dear}})
    book = CostBook(Coefficients(), replicas=lambda: live, busy=lambda: busy, usage=usage.get,
                    prices=prices)  # fmt: skip
    counters = {key[3]: figures for key, figures in book.counters()}
    assert counters["team-a"].cost_usd == pytest.approx(10 * counters["team-b"].cost_usd)
    assert counters["team-a"].energy_j == counters["team-b"].energy_j  # prices are not watts
    a, b = book.per_request("a-1"), book.per_request("b-1")
    assert a is not None and b is not None and a[0] == pytest.approx(10 * b[0])
    attributions, _ = book.attributions()
    assert {x.window.owner: x.requests.cost_usd for x in attributions}["team-a"] == (
        pytest.approx(counters["team-a"].cost_usd)
    )


def test_the_operator_prices_a_revision_by_its_owner_and_node_type(tmp_path: Path) -> None:
    name = write(tmp_path, CONFIG)
    book = _price_book({"KAIP_COST_PRICES_FILE": name})
    assert _price_book({}) == PriceBook()
    metrics = RevisionMetrics(requests=400, errors=0, p99_latency_ms=None, busy_seconds=36.0)
    resources = Resources(cpu="2", memory="1G")
    theirs = cost_evidence(metrics, resources, book.resolve("team-a", None))
    ours = cost_evidence(metrics, resources, book.resolve("team-b", "m5.xlarge"))
    assert theirs is not None and ours is not None
    # 36 s x (2 x 0.5 + 1 x 0.01) / 3600 and 36 s x (2 x 0.048 + 1 x 0.01) / 3600
    assert theirs.cost_usd == pytest.approx(36 * 1.01 / 3600)
    assert ours.cost_usd == pytest.approx(36 * 0.106 / 3600)
    bad = write(tmp_path, b"nodeTypes: {m5.xlarge: 3}")
    with pytest.raises(ConfigError, match=r"nodeTypes\.m5\.xlarge: expected a mapping of prices"):
        _price_book({"KAIP_COST_PRICES_FILE": bad})


def test_the_operator_resolves_a_resource_by_its_owner_and_instance_type_selector() -> None:
    book = PriceBook.from_yaml(CONFIG)
    body = {
        "apiVersion": "kaip.dev/v1alpha1", "kind": "Model",
        "metadata": {"name": "digits", "namespace": "ml", "uid": "u-1"},
        "spec": {"owner": "team-b", "artifact": {"uri": "https://e.com/m.onnx", "format": "onnx",
                                                 "sha256": "a" * 64}},
    }  # fmt: skip
    model = parse(body)
    assert isinstance(model, Model)
    assert prices_of(book, model).cpu_core_hour == 0.031611
    on_node = {**body, "spec": {**body["spec"],
                                "nodeSelector": {INSTANCE_TYPE_LABEL: "m5.xlarge"}}}  # fmt: skip
    model = parse(on_node)
    assert isinstance(model, Model) and prices_of(book, model).cpu_core_hour == 0.048
    theirs = parse({**on_node, "spec": {**on_node["spec"], "owner": "team-a"}})
    assert isinstance(theirs, Model) and prices_of(book, theirs).cpu_core_hour == 0.5

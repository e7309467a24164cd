"""The pure parts of `make bench-serving`: request bodies, wrk summaries, the results table.

The benchmark itself (servers under load) is not part of `make test`; these check only that the
harness asks every server the same question and reports what it measured.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "serving"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_serving_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


protocol = _load("protocol")
load = _load("load")
report = _load("report")

ROWS = [[float(i + j) for j in range(64)] for i in range(3)]


def test_oip_body_is_one_flat_fp32_tensor_with_its_shape() -> None:
    body = json.loads(protocol.OIP.body(ROWS))
    (tensor,) = body["inputs"]
    assert tensor["shape"] == [3, 64]
    assert tensor["datatype"] == "FP32"
    assert tensor["data"] == [v for row in ROWS for v in row]


@pytest.mark.parametrize(("proto", "key"), [(protocol.BENTOML, "x"), (protocol.RAY, "instances")])
def test_peer_bodies_carry_the_same_rows(proto: object, key: str) -> None:
    assert json.loads(proto.body(ROWS))[key] == ROWS  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("proto", "response"),
    [
        (protocol.OIP, {"outputs": [{"name": "predict", "shape": [3], "data": [1, 2, 3]}]}),
        (
            protocol.OIP,
            {"outputs": [{"name": "predict", "shape": [3, 1], "data": [[1], [2], [3]]}]},
        ),
        (protocol.BENTOML, [1, 2, 3]),
        (protocol.RAY, {"predictions": [1, 2, 3]}),
    ],
)
def test_predictions_are_read_from_each_format(proto: object, response: object) -> None:
    assert proto.predictions(json.dumps(response).encode()) == [1, 2, 3]  # type: ignore[attr-defined]


def test_wrk_summary_counts_status_and_socket_errors() -> None:
    summary = {
        "requests": 5000,
        "duration_us": 10_000_000,
        "bytes": 1,
        "errors": {"connect": 1, "read": 2, "write": 0, "status": 4, "timeout": 3},
        "latency_us": {"min": 1, "mean": 2, "max": 90_000, "stdev": 1,
                       "p50": 1500, "p90": 2500, "p99": 8000, "p999": 9000},
    }  # fmt: skip
    result = load.parse_summary(summary)
    assert result.rps == 500.0
    assert (result.p50_ms, result.p99_ms) == (1.5, 8.0)
    assert (result.status_errors, result.socket_errors, result.errors) == (4, 6, 10)


def _load_record(server: str, rps: float, p99: float, round_no: int = 1) -> dict[str, object]:
    return {"kind": "load", "server": server, "round": round_no, "rows": 1, "connections": 64,
            "rps": rps, "p50_ms": 1.0, "p99_ms": p99, "errors": 1, "rss_bytes": 2**20}  # fmt: skip


def test_table_takes_medians_over_rounds_and_sums_errors() -> None:
    records = [_load_record("kserve", rps, 5.0, n) for n, rps in enumerate([900, 1000, 5000])]
    records.append({"kind": "start", "server": "kserve", "startup_s": 6.0})
    row = report.table(records).splitlines()[2]
    assert row == "| kserve | 1 | 64 | 1,000 | 1.00 | 5.00 | 3 | 1 | 6.0 |"


def test_ratio_is_against_the_fastest_peer_not_the_reference() -> None:
    records = [
        _load_record("kaip", 8000, 4.0),
        _load_record("kserve", 1000, 50.0),
        _load_record("mlserver", 500, 90.0),
        _load_record("limit", 20000, 3.0),
    ]
    (line,) = report.ratios(records)
    assert "best peer kserve 1,000 req/s = **8.00x**" in line


def test_kaip_predict_is_kaip_not_a_peer_and_the_fast_path_gets_its_own_ratio() -> None:
    records = [
        _load_record("kaip", 8000, 4.0),
        _load_record("kaip-predict", 2000, 6.0),
        _load_record("kserve", 1000, 50.0),
        _load_record("limit", 20000, 3.0),
    ]
    lines = report.ratios(records)
    assert len(lines) == 3, lines
    assert "kaip 8,000 req/s vs best peer kserve 1,000 req/s = **8.00x**" in lines[0]
    assert "kaip-predict 2,000 req/s vs best peer kserve 1,000 req/s = **2.00x**" in lines[1]
    assert "compiled path vs predict inside kaip: 8,000 vs 2,000 req/s = 4.00x" in lines[2]
    servers = [row.split(" | ")[0].lstrip("| ") for row in report.table(records).splitlines()[2:]]
    assert servers == ["kaip", "kaip-predict", "kserve", "limit"]


def test_a_row_whose_predictions_went_wrong_after_a_run_says_so() -> None:
    records = [_load_record("kserve", 1000, 5.0, n) for n in (1, 2)]
    records[1]["correct_after"] = False
    row = report.table(records).splitlines()[2]
    assert row.startswith("| kserve (WRONG after 1 run(s)) | 1 | 64 |")


def test_the_served_path_is_read_from_kaips_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    servers = _load("servers")
    prefix = "2026-11-29 10:00:00,000 INFO kaip.serving.runtimes.sklearn sklearn: Pipeline "
    assert servers.serving_path(prefix + "compiled to numpy for float32, float64, int64") == (
        "compiled"
    )
    assert servers.serving_path(prefix + "compiled to numpy for no dtype (kept predict)") == (
        "predict"
    )
    assert servers.serving_path(prefix + "served by its own predict (compile_linear is off)") == (
        "predict"
    )
    assert servers.serving_path("uvicorn started") is None
    assert servers.SERVING_PATH == {"kaip": "compiled", "kaip-predict": "predict"}

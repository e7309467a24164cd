"""Session fixtures: the quickstart digits model (trained here, served by ``kaip serve`` with
traces exported to an in-test OTLP receiver), the tiny-lm example (OpenAI + OIP v2) and the
counting echo model used for batching and datatype round trips."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from otlp_receiver import OtlpReceiver, serve_otlp

from model_server.harness import ROOT, RunningServer, counting_spec, start_server


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    with serve_otlp() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def quickstart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/quickstart copied and trained with its own train.py."""
    directory = tmp_path_factory.mktemp("quickstart") / "quickstart"
    shutil.copytree(ROOT / "examples" / "quickstart", directory)
    subprocess.run([sys.executable, str(directory / "train.py")], check=True, capture_output=True)
    return directory


@pytest.fixture(scope="session")
def digits_model(quickstart_dir: Path) -> Any:
    import joblib

    return joblib.load(quickstart_dir / "model.joblib")


@pytest.fixture(scope="session")
def digits_server(
    quickstart_dir: Path, otlp_receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """``kaip serve QUICKSTART --model digits``, exporting traces to the receiver."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",
    }
    server = start_server(
        quickstart_dir, "digits", tmp_path_factory.mktemp("digits-server"), env=env, cli=True
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_lm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(
        ROOT / "examples" / "tiny-lm", "tiny-lm", tmp_path_factory.mktemp("tiny-lm-server")
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def counting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("counting")
    spec = counting_spec(directory / "spec", batching="{maxBatchSize: 64, maxDelayMs: 5}")
    server = start_server(spec, "counting", directory / "server")
    yield server
    server.stop()

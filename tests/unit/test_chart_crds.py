"""charts/kaip/crds/ holds exactly what `kaip crd` generates from the spec models today."""

import subprocess
import sys
from pathlib import Path

CRDS = Path(__file__).parents[2] / "charts" / "kaip" / "crds" / "kaip.dev.yaml"


def test_the_charts_crds_are_current() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kaip.cli", "crd"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert CRDS.read_text() == done.stdout, "the chart's CRDs are stale: run `make chart-crds`"

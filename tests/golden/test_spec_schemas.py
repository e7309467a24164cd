"""Golden tests: ``kaip crd`` and ``kaip schema`` output, reviewed as diffs.

Both are generated from the spec models, so a model change shows up here as a diff of
``tests/golden/schemas/``. When intended, rewrite them with ``UPDATE_GOLDEN=1 pytest
tests/golden`` and review the diff.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "schemas"
KAIP = Path(sys.executable).with_name("kaip")
COMMANDS = {
    "crds.yaml": ["crd"],
    "kaip.schema.json": ["schema"],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_generated_schema_matches_golden(name: str) -> None:
    result = subprocess.run(
        [str(KAIP), *COMMANDS[name]], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(result.stdout)
    assert result.stdout == golden.read_text(), f"run UPDATE_GOLDEN=1 pytest {__file__}"


def test_chart_ships_the_crds_kaip_crd_prints() -> None:
    chart = Path(__file__).parents[2] / "charts" / "kaip" / "crds" / "kaip.dev.yaml"
    result = subprocess.run(
        [str(KAIP), "crd"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout == chart.read_text(), "run make chart-crds"

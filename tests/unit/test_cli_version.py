import subprocess
import sys

import kaip


def test_version_command_prints_package_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kaip.cli", "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"kaip {kaip.__version__}"

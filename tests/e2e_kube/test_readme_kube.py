"""The README's `kaip apply` / `kaip delete` commands run, in order, against the test cluster."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from kube_harness import ControlPlane

ROOT = Path(__file__).parents[2]
KAIP = Path(sys.executable).with_name("kaip")
COMMANDS = [
    line.split("#")[0].strip()
    for block in re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    for line in block.splitlines()
    if line.startswith(("kaip apply", "kaip delete"))
]


def test_readme_cluster_commands_run(kube_cluster: ControlPlane) -> None:
    assert [c.split()[1] for c in COMMANDS] == ["apply", "apply", "delete"]
    env = {**os.environ, "KUBECONFIG": str(kube_cluster.kubeconfig)}
    for command in COMMANDS:
        out = subprocess.run(
            [str(KAIP), *shlex.split(command)[1:]],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert out.returncode == 0, (command, out.stderr)
        assert out.stdout

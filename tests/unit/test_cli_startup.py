"""The CLI starts without loading the platform: ``kaip status`` should not pay for ``kaip up``.

Every ``kaip`` command imports :mod:`kaip.cli.main`, which registers every command. Importing
the local controller's loop (its rollouts and runtimes) or the model server costs about a
second of CPU on each start; only ``kaip up`` and ``kaip serve`` need them, and they import
them when they run.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "kaip.local.controller.loop",
    "kaip.local.controller.platform",
    "kaip.serving.server",
    "kaip.serving.entrypoint",
)


def test_importing_the_cli_loads_neither_the_controller_nor_the_model_server() -> None:
    probe = (
        f"import sys, kaip.cli.main\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "", f"loaded at start-up: {done.stdout.strip()}"


def test_the_lazy_names_of_the_controller_package_resolve() -> None:
    import kaip.local.controller as controller

    for name in controller.__all__:
        assert getattr(controller, name) is not None

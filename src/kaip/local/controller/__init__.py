"""The local controller: one loop that keeps processes, routes and rollouts equal to the spec.

:mod:`~kaip.local.controller.loop` decides, :mod:`~kaip.local.controller.admin` is its HTTP face
under ``/_kaip/`` on the control port (:mod:`~kaip.local.controller.control`), behind
:mod:`~kaip.local.controller.guard` and :mod:`~kaip.local.controller.auth`;
:mod:`~kaip.local.controller.runrecord` is how the CLI finds a running ``kaip up``, and
:mod:`~kaip.local.controller.platform` wires everything for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kaip.local.controller.loop import Controller, ControllerConfig
    from kaip.local.controller.platform import serve
    from kaip.local.controller.preflight import check_local
    from kaip.local.controller.runrecord import (
        RUN_FILE,
        TOKEN_FILE,
        RunRecord,
        find_running,
        read_admin_token,
        read_run_record,
    )

_HOME = {
    "Controller": "loop",
    "ControllerConfig": "loop",
    "serve": "platform",
    "check_local": "preflight",
    "RUN_FILE": "runrecord",
    "TOKEN_FILE": "runrecord",
    "RunRecord": "runrecord",
    "find_running": "runrecord",
    "read_admin_token": "runrecord",
    "read_run_record": "runrecord",
}
"""Where each name lives. Imported when first asked for: the CLI's ``kaip status`` needs the run
record, not the controller's loop, its runtimes and the model server (a second of start-up)."""


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "RUN_FILE",
    "TOKEN_FILE",
    "Controller",
    "ControllerConfig",
    "RunRecord",
    "check_local",
    "find_running",
    "read_admin_token",
    "read_run_record",
    "serve",
]

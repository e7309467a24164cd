"""The local controller: one loop that keeps processes, routes and rollouts equal to the spec.

:mod:`~kaip.local.controller.loop` decides, :mod:`~kaip.local.controller.admin` is its HTTP face
under ``/_kaip/`` on the control port (:mod:`~kaip.local.controller.control`), behind
:mod:`~kaip.local.controller.guard` and :mod:`~kaip.local.controller.auth`;
:mod:`~kaip.local.controller.runrecord` is how the CLI finds a running ``kaip up``, and
:mod:`~kaip.local.controller.platform` wires everything for it.
"""

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
from kaip.local.controller.status import status

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
    "status",
]

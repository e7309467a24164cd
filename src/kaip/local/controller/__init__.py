"""The local controller: one loop that keeps processes, routes and rollouts equal to the spec.

:mod:`~kaip.local.controller.loop` decides, :mod:`~kaip.local.controller.admin` is its HTTP face
under ``/_kaip/``, :mod:`~kaip.local.controller.platform` wires everything for ``kaip up``.
"""

from kaip.local.controller.loop import Controller, ControllerConfig
from kaip.local.controller.platform import RUN_FILE, read_run_file, serve
from kaip.local.controller.status import status

__all__ = ["RUN_FILE", "Controller", "ControllerConfig", "read_run_file", "serve", "status"]

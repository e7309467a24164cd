"""The local process supervisor: replicas of models and apps as real child processes.

:mod:`~kaip.local.supervisor.process` starts, health-checks, restarts and drains processes;
:mod:`~kaip.local.supervisor.launch` says how a Model or an App runs. Never imports the gateway
or the state database; decides nothing about replica counts or traffic.
"""

from kaip.local.supervisor.launch import (
    MODEL_HEALTH_PATH,
    app_launch,
    model_launch,
    snapshot_path,
    write_snapshot,
)
from kaip.local.supervisor.process import (
    Launch,
    Phase,
    Replica,
    Supervisor,
    Timings,
    free_port,
    kill_orphans,
)

__all__ = [
    "MODEL_HEALTH_PATH",
    "Launch",
    "Phase",
    "Replica",
    "Supervisor",
    "Timings",
    "app_launch",
    "free_port",
    "kill_orphans",
    "model_launch",
    "snapshot_path",
    "write_snapshot",
]

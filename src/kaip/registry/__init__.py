"""The model registry: versions, aliases and the runs that made them (lineage).

Embedded by default (:mod:`.embedded`: SQLite ``registry.db`` and a content-addressed store
under the state directory); every backend implements :class:`Registry`. Runs of TrainingJobs
are recorded in :mod:`.runs`. An I/O owner beside the local platform and the Kubernetes client:
imports neither, and never starts processes.
"""

from kaip.registry.embedded import EmbeddedRegistry
from kaip.registry.records import (
    FINISHED,
    LATEST,
    ModelVersion,
    Registration,
    Registry,
    RunStatus,
    check_alias,
    pin_version,
    split_reference,
)
from kaip.registry.runs import RunRecord, RunStore

__all__ = [
    "FINISHED",
    "LATEST",
    "EmbeddedRegistry",
    "ModelVersion",
    "Registration",
    "Registry",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "check_alias",
    "pin_version",
    "split_reference",
]

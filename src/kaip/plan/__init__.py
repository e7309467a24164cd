"""The plan: spec + settings -> one resolved :class:`Workload` per resource (pure).

Owns revision ids (:func:`revision_id`), the labels every target puts on what it runs, and
namespace resolution. Never does I/O and knows nothing of Kubernetes object shapes.
"""

from kaip.plan.build import (
    DEFAULT_NAMESPACE,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_OWNER,
    LABEL_PART_OF,
    LABEL_REVISION,
    LABEL_VERSION,
    Component,
    Plan,
    ResolvedResources,
    Workload,
    build_plan,
    plan_workload,
)
from kaip.plan.diff import spec_diff
from kaip.plan.local_gaps import LocalGaps, local_gaps
from kaip.plan.revision import REVISION_LENGTH, canonical_spec_json, revision_id

__all__ = [
    "DEFAULT_NAMESPACE",
    "LABEL_COMPONENT",
    "LABEL_INSTANCE",
    "LABEL_MANAGED_BY",
    "LABEL_NAME",
    "LABEL_OWNER",
    "LABEL_PART_OF",
    "LABEL_REVISION",
    "LABEL_VERSION",
    "REVISION_LENGTH",
    "Component",
    "LocalGaps",
    "Plan",
    "ResolvedResources",
    "Workload",
    "build_plan",
    "canonical_spec_json",
    "local_gaps",
    "plan_workload",
    "revision_id",
    "spec_diff",
]

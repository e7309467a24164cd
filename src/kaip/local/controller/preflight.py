"""The local platform's check of a spec against the environment it will run in.

Replicas inherit ``kaip up``'s environment, so that is where a variable the spec takes from a
Secret or ConfigMap on Kubernetes (``envValueFrom``) must be found; the decision of what is
missing is :func:`kaip.plan.local_gaps`. Reads ``os.environ``; starts nothing.
"""

from __future__ import annotations

import os

from kaip.errors import SpecError
from kaip.plan import local_gaps
from kaip.spec import SpecSet


def check_local(specs: SpecSet) -> list[str]:
    """Raise :class:`SpecError` if ``specs`` need what this environment lacks; else the notices."""
    gaps = local_gaps(specs, os.environ)
    if gaps.problems:
        raise SpecError(gaps.problems)
    return gaps.notices

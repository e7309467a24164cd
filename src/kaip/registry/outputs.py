"""A training run's output as a local file: the one place kaip reads what a job wrote.

``kaip up``/``kaip train`` (:mod:`kaip.local.controller.training`) and the operator
(:mod:`kaip.kube.operator.versions`) both read a job's output through :func:`local_copy` before
registering it: an ``s3://BUCKET/KEY`` object is downloaded once, bounded in size and time and
hashed on the way, exactly as the model server downloads artifacts (:mod:`kaip.serving.s3`); a
local path is used as it is. Blocking: callers in an event loop run it in a thread. Never
registers anything itself.
"""

from __future__ import annotations

from pathlib import Path

from kaip.serving.download import FetchLimits


def local_copy(location: str, scratch: Path, limits: FetchLimits = FetchLimits()) -> Path:
    """The artifact at ``location`` as a local file: an ``s3://`` object downloaded (bounded,
    hashed) into ``scratch``, a path as it is."""
    if not location.startswith("s3://"):
        return Path(location)
    from kaip.serving import s3

    _, key = s3.split(location)
    return s3.download(location, scratch / (Path(key).name or "artifact"), limits=limits)[0]

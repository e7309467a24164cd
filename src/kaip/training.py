"""The contract between a training job and kaip: what the job is told, and how it reports.

A job run by kaip (``kaip up``, ``kaip train``, or a Job the operator created) learns where
things are from its environment, and reports by printing lines on its standard output, so any
language can take part; this module is the small Python helper for both sides.

What the job is told (environment)::

    KAIP_JOB_NAME        the TrainingJob's name
    KAIP_RUN_ID          the run (one execution, with all its retries), e.g. "7"
    KAIP_ATTEMPT         1 for the first try, 2 for the first retry, ...
    KAIP_CHECKPOINT_DIR  spec.checkpointDir, resolved (absent when not set)
    KAIP_RESUME_FROM     on a retry: the newest checkpoint this run wrote (absent otherwise)
    KAIP_OUTPUT_URI      where to write the artifact (spec.output.uri, resolved)
    KAIP_OUTPUT_FORMAT   spec.output.format

What the job says (one line each on stdout; anything else is just log)::

    KAIP_PROGRESS 0.42            fraction done, 0..1
    KAIP_METRIC accuracy 0.97     a number the quality gate and lineage read (the last one wins)
    KAIP_PARAM C 0.5              a hyperparameter, recorded with the version

Write checkpoints atomically (to a temporary name starting with ``.``, then rename): kaip offers
the newest entry of the checkpoint directory that does not start with ``.``.

Pure: parsing, and the helpers below print and read the environment they are given. Imports
nothing from kaip, so job code can vendor this one file.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

MAX_NAME = 128
MAX_VALUE = 1024
_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")


@dataclass(frozen=True)
class Report:
    """One report line of a job: its progress, a metric or a parameter."""

    what: Literal["progress", "metric", "param"]
    name: str
    value: float | str


def parse_line(line: str) -> Report | None:
    """The report in ``line``, or None when it is ordinary output (or malformed)."""
    if not line.startswith("KAIP_"):
        return None
    parts = line.strip().split(None, 2)
    try:
        if parts[0] == "KAIP_PROGRESS" and len(parts) == 2:
            value = float(parts[1])
            if math.isfinite(value):
                return Report("progress", "", min(1.0, max(0.0, value)))
        elif parts[0] == "KAIP_METRIC" and len(parts) == 3 and _NAME.fullmatch(parts[1]):
            value = float(parts[2])
            if math.isfinite(value):
                return Report("metric", parts[1], value)
        elif parts[0] == "KAIP_PARAM" and len(parts) == 3 and _NAME.fullmatch(parts[1]):
            return Report("param", parts[1], parts[2][:MAX_VALUE])
    except (ValueError, IndexError):
        return None
    return None


# -- helpers for job code ------------------------------------------------------------------------


def progress(fraction: float) -> None:
    """Report how far the job is (0..1)."""
    _say(f"KAIP_PROGRESS {fraction:.4f}")


def metric(name: str, value: float) -> None:
    """Report a metric of the trained model (e.g. ``accuracy``); the last value reported wins."""
    _say(f"KAIP_METRIC {name} {value!r}")


def param(name: str, value: object) -> None:
    """Record a hyperparameter with the version this run registers."""
    _say(f"KAIP_PARAM {name} {value}")


def output_path(env: Mapping[str, str] | None = None, default: str = "model.out") -> str:
    """Where to write the artifact: ``KAIP_OUTPUT_URI``, or ``default`` outside kaip."""
    return (os.environ if env is None else env).get("KAIP_OUTPUT_URI", default)


def checkpoint_dir(env: Mapping[str, str] | None = None) -> str | None:
    return (os.environ if env is None else env).get("KAIP_CHECKPOINT_DIR")


def resume_from(env: Mapping[str, str] | None = None) -> str | None:
    """The checkpoint to resume from on a retry, or None to start from the beginning."""
    return (os.environ if env is None else env).get("KAIP_RESUME_FROM") or None


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

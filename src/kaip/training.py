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
    KAIP_REPORT_FILE     on Kubernetes: the container's terminationMessagePath (see below)

What the job says (one line each on stdout; anything else is just log)::

    KAIP_PROGRESS 0.42            fraction done, 0..1
    KAIP_METRIC accuracy 0.97     a number the quality gate and lineage read (the last one wins)
    KAIP_PARAM C 0.5              a hyperparameter, recorded with the version

Write checkpoints atomically (to a temporary name starting with ``.``, then rename): kaip offers
the newest entry of the checkpoint directory that does not start with ``.``.

On Kubernetes nobody reads a pod's stdout for these lines: the operator reads what the job's
container left in its termination message (the kubelet copies the file ``KAIP_REPORT_FILE``
names, ``/dev/termination-log``, into the pod's status when the container exits). :func:`metric`
and :func:`param` keep that file up to date when the variable is set: one JSON object, at most
:data:`MAX_REPORT_BYTES` bytes, ``{"metrics": {"accuracy": 0.97}, "params": {"C": "0.5"}}``
(:func:`encode_report`; a job in another language writes the same). Metrics come first: what
does not fit is left out, parameters before metrics, the earliest reported first, and said on
stderr. The operator decodes it
with :func:`decode_report`, and the quality gate judges the metrics as ``kaip up`` does.

Pure: parsing, and the helpers below print, write the report file and read the environment
they are given. Imports nothing from kaip, so job code can vendor this one file.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_NAME = 128
MAX_VALUE = 1024
MAX_REPORT_BYTES = 2048
"""The most a report file holds: well under the 4096 bytes the kubelet keeps of a message."""
REPORT_FILE_ENV = "KAIP_REPORT_FILE"
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


@dataclass(frozen=True)
class FinalReport:
    """What a job reported by the time it exited: its metrics and parameters."""

    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)


def encode_report(report: FinalReport) -> tuple[str, list[str]]:
    """``report`` as the report file's JSON (at most :data:`MAX_REPORT_BYTES` bytes), and the
    names left out to fit: parameters first, then the metrics reported earliest."""
    metrics, params = dict(report.metrics), dict(report.params)
    left_out: list[str] = []

    def text() -> str:
        body: dict[str, Any] = {"metrics": metrics}
        if params:
            body["params"] = params
        return json.dumps(body, separators=(",", ":"), allow_nan=False)

    while len(text().encode()) > MAX_REPORT_BYTES:
        kind, names = ("param", params) if params else ("metric", metrics)
        oldest = next(iter(names))
        del names[oldest]
        left_out.append(f"{kind} {oldest}")
    return text(), left_out


def decode_report(text: str) -> FinalReport:
    """The report in a report file's ``text``; ValueError saying what is wrong with it."""
    if not text.strip():
        raise ValueError("it is empty: the job reported no metric")
    if len(text.encode()) > MAX_REPORT_BYTES:
        raise ValueError(f"it is longer than {MAX_REPORT_BYTES} bytes")
    try:
        body = json.loads(text)
    except ValueError:
        raise ValueError(f"it is not JSON: {text[:80]!r}") from None
    if not isinstance(body, dict) or not isinstance(body.get("metrics"), dict):
        raise ValueError('it is not an object with "metrics": {"NAME": NUMBER, ...}')
    raw_params = body.get("params", {})
    if not isinstance(raw_params, dict):
        raise ValueError('its "params" is not an object')
    metrics: dict[str, float] = {}
    for name, value in body["metrics"].items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"metric name {name[:MAX_NAME]!r}: use 1-128 letters, digits or _.:/-")
        finite = isinstance(value, int | float) and not isinstance(value, bool)
        if not finite or not math.isfinite(value):
            raise ValueError(f"metric {name!r}: {str(value)[:40]} is not a finite number")
        metrics[name] = float(value)
    params = {
        name: str(value)[:MAX_VALUE] for name, value in raw_params.items() if _NAME.fullmatch(name)
    }
    return FinalReport(metrics, params)


# -- helpers for job code ------------------------------------------------------------------------

_reported: dict[str, dict[str, Any]] = {"metrics": {}, "params": {}}
"""What this process reported so far, for the report file (the last value of a name wins)."""


def progress(fraction: float) -> None:
    """Report how far the job is (0..1)."""
    _say(f"KAIP_PROGRESS {fraction:.4f}")


def metric(name: str, value: float) -> None:
    """Report a metric of the trained model (e.g. ``accuracy``); the last value reported wins."""
    _say(f"KAIP_METRIC {name} {value!r}")
    if _NAME.fullmatch(name) and math.isfinite(value):
        _reported["metrics"].pop(name, None)  # the newest is kept longest
        _reported["metrics"][name] = float(value)
        _write_report()


def param(name: str, value: object) -> None:
    """Record a hyperparameter with the version this run registers."""
    _say(f"KAIP_PARAM {name} {value}")
    if _NAME.fullmatch(name):
        _reported["params"].pop(name, None)
        _reported["params"][name] = str(value)[:MAX_VALUE]
        _write_report()


def _write_report(env: Mapping[str, str] | None = None) -> None:
    """Rewrite the report file (under kaip's operator) with everything reported so far."""
    path = (os.environ if env is None else env).get(REPORT_FILE_ENV)
    if not path:
        return
    text, left_out = encode_report(FinalReport(_reported["metrics"], _reported["params"]))
    if left_out:
        print(
            f"kaip.training: the report is limited to {MAX_REPORT_BYTES} bytes; left out: "
            + ", ".join(left_out),
            file=sys.stderr,
        )
    try:
        # In place: the file is a mount point the kubelet made, which cannot be renamed over.
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        print(f"kaip.training: cannot write the report to {path}: {exc}", file=sys.stderr)


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

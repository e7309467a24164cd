"""A scripted deployment history: 20 deployments over 10 simulated days, 3 of them rolled back.

The events are what the controller records (actions ``create``/``deploy``/``rollout``), with
times chosen by the script instead of the wall clock: :func:`record_history` writes them into a
real :class:`~kaip.local.state.State`, the boundary where the fake clock stops. The numbers the
tests expect are worked out by hand in :data:`EXPECTED` from the table below.

Resources: Model ``digits`` and App ``web`` (owner team-a), Model ``sentiment`` (team-b), and
``legacy`` (team-b) created before the window. Times are hours after :data:`T0`.

===========  =====  ========  ==========  ======================  =================
deployment   start  revision  commit at   ends                    artifact at
===========  =====  ========  ==========  ======================  =================
digits d1    -0     a1        -2          created (full at 0)     -1
digits d2    24     a2        20          promoted 25             22
digits d3    48     a3        47          rolled_back 48.5        —
digits d4    72     a4        60          promoted 74             68
digits d5    78     a2 (undo) —           promoted 78.5           22 (old version)
digits d6    96     a5        94          promoted 97             95
digits d7    120    a6        116         superseded 120.25       —
digits d8    120.25 a7        120         promoted 121.25         119.25
digits —     144    refused   —           (quality gate)          —
digits d9    236    a8        235         promoted 241 (after the window's end at 240)
sentiment s1 1      b1        0           created                 —
sentiment s2 26     b2        2           promoted 28             —
sentiment s3 50     b3        48          rolled_back 51          —
sentiment s4 74     b4        50          promoted 75             —
sentiment s5 122    b5        121         promoted 123            —
sentiment s6 170    b6        168         promoted 170.5          —
sentiment s7 194    b7        193         promoted 195            —
web w1       3      c1        2           created                 —
web w2       53     c2        52          promoted 54             —
web w3       149    c3        144         promoted 150            —
web w4       221    c4        220         promoted 221.5          —
legacy       -72    l1        -73         created (before the window)
===========  =====  ========  ==========  ======================  =================

d5 is ``kaip rollout undo``: a rollback deployment (rework) to a2, so d4 (at 100 % before it)
failed after reaching users; recovery = 78.5 - 78 = 0.5 h. d3 and s3 were caught by the canary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaip.local.state import EventRecord, RevisionRecord, State

H = 3600.0
T0 = 1_800_000_000.0
UNTIL = T0 + 240 * H
OWNERS = {"digits": "team-a", "web": "team-a", "sentiment": "team-b", "legacy": "team-b"}

Row = tuple[float, str, str, str, str, str | None, float | None, float | None]
"""(hour, kind, name, action, outcome, revision, commit hour, artifact hour)"""

ROWS: tuple[Row, ...] = (
    (-72, "Model", "legacy", "create", "created", "l1", -73, None),
    (0, "Model", "digits", "create", "created", "a1", -2, -1),
    (1, "Model", "sentiment", "create", "created", "b1", 0, None),
    (3, "App", "web", "create", "created", "c1", 2, None),
    (24, "Model", "digits", "deploy", "started", "a2", 20, 22),
    (25, "Model", "digits", "rollout", "promoted", "a2", 20, 22),
    (26, "Model", "sentiment", "deploy", "started", "b2", 2, None),
    (28, "Model", "sentiment", "rollout", "promoted", "b2", 2, None),
    (48, "Model", "digits", "deploy", "started", "a3", 47, None),
    (48.5, "Model", "digits", "rollout", "rolled_back", "a3", 47, None),
    (50, "Model", "sentiment", "deploy", "started", "b3", 48, None),
    (51, "Model", "sentiment", "rollout", "rolled_back", "b3", 48, None),
    (53, "App", "web", "deploy", "started", "c2", 52, None),
    (54, "App", "web", "rollout", "promoted", "c2", 52, None),
    (72, "Model", "digits", "deploy", "started", "a4", 60, 68),
    (74, "Model", "sentiment", "deploy", "started", "b4", 50, None),
    (74, "Model", "digits", "rollout", "promoted", "a4", 60, 68),
    (75, "Model", "sentiment", "rollout", "promoted", "b4", 50, None),
    (78, "Model", "digits", "deploy", "started", "a2", None, 22),
    (78.5, "Model", "digits", "rollout", "promoted", "a2", None, 22),
    (96, "Model", "digits", "deploy", "started", "a5", 94, 95),
    (97, "Model", "digits", "rollout", "promoted", "a5", 94, 95),
    (120, "Model", "digits", "deploy", "started", "a6", 116, None),
    (120.25, "Model", "digits", "rollout", "superseded", "a6", 116, None),
    (120.25, "Model", "digits", "deploy", "started", "a7", 120, 119.25),
    (121.25, "Model", "digits", "rollout", "promoted", "a7", 120, 119.25),
    (122, "Model", "sentiment", "deploy", "started", "b5", 121, None),
    (123, "Model", "sentiment", "rollout", "promoted", "b5", 121, None),
    (144, "Model", "digits", "deploy", "refused", None, None, 143),
    (149, "App", "web", "deploy", "started", "c3", 144, None),
    (150, "App", "web", "rollout", "promoted", "c3", 144, None),
    (170, "Model", "sentiment", "deploy", "started", "b6", 168, None),
    (170.5, "Model", "sentiment", "rollout", "promoted", "b6", 168, None),
    (194, "Model", "sentiment", "deploy", "started", "b7", 193, None),
    (195, "Model", "sentiment", "rollout", "promoted", "b7", 193, None),
    (221, "App", "web", "deploy", "started", "c4", 220, None),
    (221.5, "App", "web", "rollout", "promoted", "c4", 220, None),
    (236, "Model", "digits", "deploy", "started", "a8", 235, None),
    (241, "Model", "digits", "rollout", "promoted", "a8", 235, None),
)


def at(hour: float | None) -> float | None:
    return None if hour is None else T0 + hour * H


def record_history(state_dir: Path) -> None:
    """Write :data:`ROWS` into the state database under ``state_dir``, as the controller would.

    Each resource also gets its first revision recorded (with its owner) and made stable, which
    is where the portal reads the owner of a resource that is not running.
    """
    state = State.open(state_dir)
    try:
        for hour, kind, name, action, _, revision, _, _ in ROWS:
            if action == "create" and revision is not None:
                spec = json.dumps({"kind": kind, "spec": {"owner": OWNERS[name]}})
                state.record_revision(
                    RevisionRecord(
                        kind, name, revision, "0" * 64, spec, "/spec.yaml", T0 + hour * H
                    )
                )
                state.set_stable(kind, name, revision, T0 + hour * H)
        for hour, kind, name, action, outcome, revision, commit, artifact in ROWS:
            state.record_event(
                EventRecord(
                    at=T0 + hour * H, kind=kind, name=name, action=action,
                    change="scripted", who="script", outcome=outcome, revision=revision,
                    commit_sha="c0ffee" if commit is not None else None,
                    committed_at=at(commit), artifact_version=None,
                    artifact_digest=None, artifact_registered_at=at(artifact),
                )
            )  # fmt: skip
    finally:
        state.close()


EXPECTED: dict[str, dict[str, Any]] = {
    # every team, the whole window (10 days)
    "all": {
        "deployments": 20,  # d1-d9, s1-s7, w1-w4 (legacy is before the window)
        "per_day": 2.0,  # 20 / 10 days
        "decided": 19,  # d9 is still a canary at the window's end
        "caught_by_canary": 2,  # d3, s3
        "user_impacting": 1,  # d4 (undone by d5)
        "change_fail_rate": 3 / 19,
        "rework_rate": 1 / 20,  # d5
        # commit -> 100 %, hours, sorted: 1 1 1.25 1.5 2 2 2 2 2.5 3 5 6 14 25 26 (15 values)
        "lead_commit_count": 15,
        "lead_commit_median_h": 2.0,  # the 8th
        "lead_commit_p90_h": 25.0,  # ceil(0.9 * 15) = 14th
        # artifact -> 100 %, hours: d1 1, d2 3, d4 6, d6 2, d8 2 (d5 is rework: left out)
        "lead_artifact_count": 5,
        "lead_artifact_median_h": 2.0,
        "lead_artifact_p90_h": 6.0,  # ceil(4.5) = 5th
        "recovery_median_h": 0.5,  # d4: undo started at 78, a2 at 100 % at 78.5
        "refused": 1,
    },
    # team-a: digits and web; 13 deployments, d9 running
    "team-a": {
        "deployments": 13,
        "decided": 12,
        "change_fail_rate": 2 / 12,  # d3, d4
        "rework_rate": 1 / 13,
        # 1 1.25 1.5 2 2 3 5 6 14: median the 5th, p90 the ceil(8.1) = 9th
        "lead_commit_median_h": 2.0,
        "lead_commit_p90_h": 14.0,
    },
    # team-b: sentiment; 7 deployments; leads 1 2 2 2.5 25 26
    "team-b": {
        "deployments": 7,
        "decided": 7,
        "change_fail_rate": 1 / 7,  # s3
        "rework_rate": 0.0,
        "lead_commit_median_h": 2.25,  # (2 + 2.5) / 2
        "lead_commit_p90_h": 26.0,  # ceil(5.4) = 6th
        "per_day": 0.7,
    },
}

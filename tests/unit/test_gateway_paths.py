from __future__ import annotations

import pytest

from kaip.local.gateway.paths import Target, TargetKind, parse_target


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/v2", Target(TargetKind.SERVER_METADATA)),
        (b"/v2/", Target(TargetKind.SERVER_METADATA)),
        (b"/v2/health/live", Target(TargetKind.HEALTH_LIVE)),
        (b"/v2/health/ready", Target(TargetKind.HEALTH_READY)),
        (b"/v2/health/other", Target(TargetKind.NOT_FOUND)),
        (b"/v2/models", Target(TargetKind.MODEL_LIST)),
        (b"/v2/models/", Target(TargetKind.MODEL_LIST)),
        (
            b"/v2/models/digits/infer",
            Target(TargetKind.MODEL, upstream=b"/v2/models/digits/infer", rest="digits/infer"),
        ),
        (
            b"/v2/models/digits",
            Target(TargetKind.MODEL, upstream=b"/v2/models/digits", rest="digits"),
        ),
        (
            b"/v2/models/digits/versions/3f2a/infer?x=1",
            Target(
                TargetKind.MODEL,
                upstream=b"/v2/models/digits/versions/3f2a/infer?x=1",
                rest="digits/versions/3f2a/infer",
            ),
        ),
        (
            b"/v2/models/my%20m/ready",
            Target(TargetKind.MODEL, upstream=b"/v2/models/my%20m/ready", rest="my m/ready"),
        ),
        (
            b"/v2/models/org/m%2Fv1/infer/",
            Target(
                TargetKind.MODEL, upstream=b"/v2/models/org/m%2Fv1/infer/", rest="org/m/v1/infer"
            ),
        ),
        (b"/v2/models/stats", Target(TargetKind.ALL_STATS)),
        (b"/v2/models/stats/", Target(TargetKind.ALL_STATS)),
        (b"/v1/models", Target(TargetKind.OPENAI_MODELS)),
        (b"/v1/models/", Target(TargetKind.OPENAI_MODELS)),
        (b"/v1/models/gpt", Target(TargetKind.OPENAI_MODEL, "gpt")),
        (b"/v1/models/meta-llama/Llama-3", Target(TargetKind.OPENAI_MODEL, "meta-llama/Llama-3")),
        (
            b"/v1/chat/completions",
            Target(TargetKind.OPENAI, upstream=b"/v1/chat/completions"),
        ),
        (b"/apps/web", Target(TargetKind.APP, "web", upstream=b"/")),
        (b"/apps/web/", Target(TargetKind.APP, "web", upstream=b"/")),
        (b"/apps/web/a/b?q=1", Target(TargetKind.APP, "web", upstream=b"/a/b?q=1")),
        (b"/apps/web?q=1", Target(TargetKind.APP, "web", upstream=b"/?q=1")),
        (b"/apps/", Target(TargetKind.NOT_FOUND)),
        (b"/_kaip/status", Target(TargetKind.ADMIN, upstream=b"/_kaip/status")),
        (b"/metrics", Target(TargetKind.METRICS)),
        (b"/metrics?name[]=x", Target(TargetKind.METRICS)),
        (b"/metrics/x", Target(TargetKind.NOT_FOUND)),
        (b"/", Target(TargetKind.NOT_FOUND)),
        (b"/v3/models/x", Target(TargetKind.NOT_FOUND)),
    ],
)
def test_parse_target(raw: bytes, expected: Target) -> None:
    assert parse_target(raw) == expected

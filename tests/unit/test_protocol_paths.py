"""Reading /v2/models paths by served name, names that contain '/' included."""

from __future__ import annotations

import pytest

from kaip.protocol.model_paths import (
    ModelPath,
    guess_model_name,
    split_model_path,
    unknown_model_message,
)
from kaip.spec import first_clash, names_clash

SERVED = {"simple", "meta-llama/Llama-3.1-8B-Instruct", "org/a.b:c"}


@pytest.mark.parametrize(
    ("rest", "expected"),
    [
        ("simple", ModelPath("simple", None, "")),
        ("simple/infer", ModelPath("simple", None, "infer")),
        ("simple/versions/3f2a/infer", ModelPath("simple", "3f2a", "infer")),
        ("simple/versions/3f2a", ModelPath("simple", "3f2a", "")),
        ("simple/trace/setting", ModelPath("simple", None, "trace/setting")),
        (
            "meta-llama/Llama-3.1-8B-Instruct",
            ModelPath("meta-llama/Llama-3.1-8B-Instruct", None, ""),
        ),
        (
            "meta-llama/Llama-3.1-8B-Instruct/versions/1/stats",
            ModelPath("meta-llama/Llama-3.1-8B-Instruct", "1", "stats"),
        ),
        ("org/a.b:c/ready", ModelPath("org/a.b:c", None, "ready")),
        ("meta-llama", None),
        ("meta-llama/infer", None),
        ("simplex/infer", None),
        ("", None),
    ],
)
def test_split_model_path_reads_the_served_name_first(
    rest: str, expected: ModelPath | None
) -> None:
    assert split_model_path(rest, SERVED.__contains__) == expected


@pytest.mark.parametrize(
    ("rest", "name"),
    [
        ("wrong_model_name/infer", "wrong_model_name"),
        ("a/b/versions/1/infer", "a/b"),
        ("a/b/ready", "a/b"),
        ("a/b", "a/b"),
        ("versions", "versions"),
    ],
)
def test_guess_model_name_for_error_messages(rest: str, name: str) -> None:
    assert guess_model_name(rest) == name


def test_unknown_model_message_is_tritons() -> None:
    # Triton's example clients check that the message starts with these words.
    assert unknown_model_message("x").startswith("Request for unknown model")
    assert (
        unknown_model_message("x", "2") == "Request for unknown model: 'x' version 2 is not found"
    )


@pytest.mark.parametrize(
    ("a", "b", "clash"),
    [
        ("a", "a", True),
        ("a", "a/b", True),
        ("a/b", "a", True),
        ("a", "ab", False),
        ("a/b", "a/c", False),
        ("a-b", "a", False),
    ],
)
def test_names_clash_when_equal_or_a_whole_segment_prefix(a: str, b: str, clash: bool) -> None:
    assert names_clash(a, b) is clash


def test_first_clash_names_both_owners() -> None:
    assert first_clash([("m1", ["x", "y"]), ("m2", ["z"])]) is None
    assert first_clash([("m1", ["x", "x"])]) is None  # an owner never clashes with itself
    assert first_clash([("m1", ["x"]), ("m2", ["z", "x/large"])]) == ("m2", "x/large", "m1", "x")

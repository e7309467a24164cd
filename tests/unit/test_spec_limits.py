"""What one spec load may cost is bounded: each attack is one located problem, never a traceback.

The corpus (``tests/spec_corpus/bad/``) holds the three files from the security review (a
600-byte "billion laughs", an alias inside its own anchor, 3,000-deep nesting), run through the
real ``kaip validate``; these tests cover the other limits and the variants.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kaip.errors import SpecError
from kaip.spec import load_paths, load_text
from kaip.spec.limits import MAX_DEPTH, MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES

HEAD = "apiVersion: kaip.dev/v1alpha1\nkind: App\nmetadata: {name: a}\nspec:\n  owner: web\n"


def problems(call: object) -> list[str]:
    with pytest.raises(SpecError) as caught:
        call()  # type: ignore[operator]
    return [p.render() for p in caught.value.problems]


@pytest.mark.parametrize("merge", [False, True], ids=["mappings", "merge-keys"])
def test_a_billion_laughs_of_mappings_stops_at_the_value_limit(merge: bool) -> None:
    levels = ["  l0: &l0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9, j: 10}"]
    for n in range(1, 9):
        if merge:
            inner = "<<: [" + ", ".join([f"*l{n - 1}"] * 10) + "]"
        else:
            inner = ", ".join(f"k{k}: *l{n - 1}" for k in range(10))
        levels.append(f"  l{n}: &l{n} {{{inner}}}")
    text = HEAD + "\n".join(levels) + "\n"
    assert len(text) < 2000
    (line,) = problems(lambda: load_text(text, "laughs.yaml"))
    assert line.startswith("laughs.yaml:10:")  # l4: the first level past 100,000 values
    assert "more than 100,000 values" in line


def test_aliases_that_nest_past_the_depth_limit_are_refused_where_they_are_used() -> None:
    chain = ["  d0: &d0 [x]"] + [f"  d{n}: &d{n} [*d{n - 1}]" for n in range(1, MAX_DEPTH + 2)]
    text = HEAD + "\n".join(chain) + "\n"
    (line,) = problems(lambda: load_text(text, "chain.yaml"))
    assert "through aliases, values nest more than 64 deep" in line


def test_a_spec_that_uses_aliases_within_the_limits_loads() -> None:
    text = HEAD + "  command: &cmd [python, app.py]\n  env: {A: &v '1', B: *v}\n"
    (app,) = load_text(text).resources
    assert app.spec.env == {"A": "1", "B": "1"}  # type: ignore[union-attr]


def test_a_file_over_the_size_limit_is_not_read(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(HEAD + "#" * MAX_FILE_BYTES)
    (line,) = problems(lambda: load_paths([big]))
    assert line == (
        f"{big}:1:1: file is larger than 256 KiB, the most a spec file may be "
        "(is this a spec? split a large one into several files)"
    )


def test_files_over_the_total_limit_stop_the_load_with_one_problem(tmp_path: Path) -> None:
    each = MAX_FILE_BYTES - 1024
    count = MAX_TOTAL_BYTES // each + 1
    for n in range(count):
        (tmp_path / f"f{n:03}.yaml").write_text("]" + "x" * (each - 1))  # fails at once
    found = problems(lambda: load_paths([tmp_path]))
    assert found[-1].endswith(
        "the spec files together are larger than 4 MiB (load fewer files at once)"
    )
    assert len(found) == count  # a syntax error each; nothing after the total is read


def test_a_tree_of_too_many_files_is_refused_before_any_is_read(tmp_path: Path) -> None:
    for n in range(MAX_FILES + 1):
        (tmp_path / f"r{n}.yaml").write_text(": not yaml [")
    (line,) = problems(lambda: load_paths([tmp_path]))
    assert f"more than {MAX_FILES} spec files to read" in line


def test_a_device_is_not_a_spec_file() -> None:
    (line,) = problems(lambda: load_paths(["/dev/zero"]))
    assert line == "/dev/zero:1:1: not a regular file (name a spec file or directory)"


def test_text_that_is_not_utf8_is_one_problem(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(HEAD.encode() + b"  env: {A: '\xe9'}\n")
    (line,) = problems(lambda: load_paths([latin]))
    assert line.startswith(f"{latin}:1:1: cannot read file: not UTF-8 text")

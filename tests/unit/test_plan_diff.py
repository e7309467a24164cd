"""kaip.plan.spec_diff: what ``kaip deploy --dry-run`` prints for a spec change."""

from __future__ import annotations

import json

from kaip.plan import spec_diff
from kaip.plan.diff import MAX_DIFF_LINES


def test_equal_specs_have_no_diff_and_a_first_one_is_all_added() -> None:
    spec = json.dumps({"artifact": {"uri": "model.joblib", "sha256": "ab" * 32}})
    assert spec_diff(spec, spec, "a", "b") == ""
    added = spec_diff(None, spec, "none", "new").splitlines()
    assert added[:2] == ["--- none", "+++ new"]
    assert "+  sha256: " + "ab" * 32 in added


def test_new_weights_show_as_the_pinned_digest_changing() -> None:
    old = json.dumps({"artifact": {"uri": "m", "sha256": "a" * 64}, "owner": "x"})
    new = json.dumps({"owner": "x", "artifact": {"sha256": "b" * 64, "uri": "m"}})  # reordered
    changed = [line for line in spec_diff(old, new, "a", "b").splitlines() if line[:1] in "+-"]
    assert changed == ["--- a", "+++ b", "-  sha256: " + "a" * 64, "+  sha256: " + "b" * 64]


def test_a_huge_diff_is_cut_with_a_note() -> None:
    new = json.dumps({f"k{i}": i for i in range(MAX_DIFF_LINES * 2)})
    lines = spec_diff(None, new, "a", "b").splitlines()
    assert len(lines) == MAX_DIFF_LINES + 1
    assert lines[-1].endswith("more lines not shown")

"""What a deploy would change in one resource's spec: a unified diff of two revisions (pure).

Both sides are canonical spec JSON (:func:`~kaip.plan.revision.canonical_spec_json`, as the
state database and the cluster keep it), shown as YAML with sorted keys so that a diff names
fields, not reordered lines. Never does I/O; ``kaip deploy --dry-run`` and the operator's
status can both print it.
"""

from __future__ import annotations

import difflib
import json

import yaml

MAX_DIFF_LINES = 400
"""A diff longer than this is cut (with a note): a spec is small; this bounds the answer."""


def spec_diff(old_json: str | None, new_json: str, old_label: str, new_label: str) -> str:
    """The unified diff from ``old_json`` (None: nothing yet) to ``new_json``; '' if equal.

    >>> print(spec_diff('{"a":1,"b":{"c":2}}', '{"a":1,"b":{"c":3}}', "r1", "r2"), end="")
    --- r1
    +++ r2
    @@ -1,3 +1,3 @@
     a: 1
     b:
    -  c: 2
    +  c: 3
    """
    old = [] if old_json is None else _lines(old_json)
    lines = list(difflib.unified_diff(old, _lines(new_json), old_label, new_label, lineterm=""))
    if len(lines) > MAX_DIFF_LINES:
        cut = len(lines) - MAX_DIFF_LINES
        lines = [*lines[:MAX_DIFF_LINES], f"... {cut} more lines not shown"]
    return "".join(f"{line}\n" for line in lines)


def _lines(spec_json: str) -> list[str]:
    text = yaml.safe_dump(json.loads(spec_json), sort_keys=True, default_flow_style=False)
    return text.splitlines()


__all__ = ["MAX_DIFF_LINES", "spec_diff"]

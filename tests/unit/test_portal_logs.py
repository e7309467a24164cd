"""The portal's log tail (kaip.portal.logs): bounded reads of a real file, escaped lines."""

from __future__ import annotations

from pathlib import Path

from kaip.portal.logs import MAX_LINE_CHARS, TAIL_BYTES, TAIL_LINES, logs_fragment, tail


def test_the_tail_is_the_last_whole_lines_within_the_byte_bound(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    log.write_text("".join(f"line {i:06d}\n" for i in range(50_000)))  # 600 KB
    lines = tail(log)
    assert len(lines) == TAIL_LINES
    assert lines[-1] == "line 049999" and lines[0] == f"line {50_000 - TAIL_LINES:06d}"


def test_a_huge_line_is_cut_and_a_partial_first_line_dropped(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    log.write_text("x" * (3 * TAIL_BYTES) + "\nshort\n" + "y" * 2000 + "\n")
    assert tail(log) == ["short", "y" * MAX_LINE_CHARS]
    assert tail(tmp_path / "missing.log") == []


def test_lines_are_escaped_and_an_empty_tail_says_what_to_do() -> None:
    html = logs_fragment([("r-1", "<script>alert(1)</script>")], "")
    assert "<script>" not in html and "r-1 | &lt;script&gt;" in html
    assert "kubectl logs" in logs_fragment([], "run kubectl logs")
    assert "No log lines yet." in logs_fragment([], "")

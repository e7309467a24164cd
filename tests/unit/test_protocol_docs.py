"""docs/protocols.md shows the extension table the servers answer from, row for row."""

from __future__ import annotations

from pathlib import Path

from kaip.protocol.extensions import EXTENSIONS, SUPPORTED

DOC = Path(__file__).parents[2] / "docs" / "protocols.md"


def _rows() -> list[list[str]]:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index("| extension | protocol | kaip | endpoints | how |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_the_docs_table_is_the_code_table() -> None:
    expected = [
        [
            f"`{e.name}`",
            e.protocol,
            "yes" if e.supported else "no",
            ", ".join(f"`{r}`" for r in e.routes) or "—",
            e.note,
        ]
        for e in EXTENSIONS
    ]
    assert _rows() == expected


def test_servers_list_only_what_they_implement() -> None:
    assert SUPPORTED == ("binary_tensor_data", "statistics")

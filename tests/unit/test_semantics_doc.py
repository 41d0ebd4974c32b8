"""Every promise in docs/SEMANTICS.md names a test that keeps it, and that test exists.

Each table row of the page ends with a "pinned by" cell listing tests as
``tests/dir/test_file.py::test_name`` (or ``::TestClass::test_name``; a parametrized id in
brackets is allowed). A row without one, or naming a file or test that is not there (a test
renamed or removed), fails here, so the page cannot drift away from the suite unnoticed.
The check reads the test files' text; it does not collect them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEMANTICS = ROOT / "docs" / "SEMANTICS.md"
PIN_COLUMN = "pinned by"

_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_TEST_REF = re.compile(r"(tests/[\w/]+\.py)((?:::\w+)+)(?:\[[^\]`]*\])?")


@dataclass(frozen=True)
class Row:
    line: int
    text: str
    pins: tuple[str, ...]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in _CELL_SPLIT.split(line.strip().strip("|"))]


def table_rows(markdown: str) -> list[Row]:
    """The body rows of every table, each with the test references of its last cell.

    A table is a run of lines starting with ``|``: a header, a ``---`` separator, then rows.
    A table whose header does not end with the pin column yields its rows with no pins, so
    a new table without the column fails the check instead of being skipped.
    """
    rows: list[Row] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        if not lines[index].startswith("|"):
            index += 1
            continue
        start = index
        while index < len(lines) and lines[index].startswith("|"):
            index += 1
        header, body = lines[start], lines[start + 2 : index]
        pinned = _cells(header)[-1].lower() == PIN_COLUMN
        for offset, line in enumerate(body):
            last = _cells(line)[-1] if pinned else ""
            refs = tuple(m.group(1) + m.group(2) for m in _TEST_REF.finditer(last))
            rows.append(Row(start + 3 + offset, _cells(line)[0], refs))
    return rows


def missing_test(ref: str, root: Path = ROOT) -> str | None:
    """Why ``ref`` names no existing test, or None when it does."""
    file_name, *names = ref.split("::")
    path = root / file_name
    if not path.is_file():
        return f"{file_name} does not exist"
    source = path.read_text()
    for name in names:
        kind = "class" if name.startswith("Test") else r"(?:async\s+)?def"
        if not re.search(rf"^\s*{kind}\s+{re.escape(name)}\b", source, re.MULTILINE):
            return f"{file_name} has no {name}"
    return None


def problems(markdown: str, root: Path = ROOT) -> list[str]:
    found = []
    for row in table_rows(markdown):
        if not row.pins:
            found.append(f"line {row.line} ({row.text[:50]}): names no test")
        for ref in row.pins:
            why = missing_test(ref, root)
            if why:
                found.append(f"line {row.line} ({row.text[:50]}): {ref}: {why}")
    return found


def test_every_semantics_row_names_tests_that_exist() -> None:
    markdown = SEMANTICS.read_text()
    rows = table_rows(markdown)
    assert len(rows) >= 60, f"only {len(rows)} table rows found: is the page still parsed?"
    assert problems(markdown) == []


def test_a_row_without_a_test_or_naming_a_missing_one_is_reported(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(
        "class TestGroup:\n    def test_inner(self):\n        pass\n\n\n"
        "async def test_there():\n    pass\n"
    )
    page = "\n".join(
        [
            "| behaviour | holds? | pinned by |",
            "|---|---|---|",
            "| kept | yes | `tests/test_x.py::test_there`, "
            "`tests/test_x.py::TestGroup::test_inner` |",
            "| parametrized | yes | `tests/test_x.py::test_there[memfs]` |",
            "| unpinned | yes | |",
            "| renamed | yes | `tests/test_x.py::test_gone` |",
            "| moved | yes | `tests/test_y.py::test_there` |",
            "",
            "| action | meaning |",
            "|---|---|",
            "| no pin column | `tests/test_x.py::test_there` |",
        ]
    )
    reported = problems(page, tmp_path)
    assert reported == [
        "line 5 (unpinned): names no test",
        "line 6 (renamed): tests/test_x.py::test_gone: tests/test_x.py has no test_gone",
        "line 7 (moved): tests/test_y.py::test_there: tests/test_y.py does not exist",
        "line 11 (no pin column): names no test",
    ]

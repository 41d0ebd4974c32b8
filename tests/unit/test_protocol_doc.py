"""Comments that cite docs/PROTOCOL.md by heading ("docs/PROTOCOL.md, Errors") name a
heading the page has, so renaming a section cannot leave pointers to nowhere behind.

A citation may wrap onto the next comment line; the words after the comma are matched
against the page's ``##`` headings, longest first.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "docs" / "PROTOCOL.md"
SCANNED = ("agfs_fuse", "tests", "bench")

_CITATION = re.compile(r"PROTOCOL\.md, ([A-Z].{0,119})", re.DOTALL)
"""A citation: the page, a comma, then a heading (headings start with a capital)."""
_CONTINUATION = re.compile(r"\s*\n\s*(?:#\s*)?")


def headings(markdown: str) -> list[str]:
    return [line[3:].strip() for line in markdown.splitlines() if line.startswith("## ")]


def cited_heading(after_comma: str, known: list[str]) -> str | None:
    """The heading a citation names: the longest known heading its text starts with."""
    text = _CONTINUATION.sub(" ", after_comma)
    for heading in sorted(known, key=len, reverse=True):
        if text.startswith(heading):
            return heading
    return None


def citations(root: Path = ROOT) -> list[tuple[str, str]]:
    """(where, the text after "PROTOCOL.md, ") for every citation in the scanned code."""
    found = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            source = path.read_text()
            for match in _CITATION.finditer(source):
                line = source.count("\n", 0, match.start()) + 1
                found.append((f"{path.relative_to(root)}:{line}", match.group(1)))
    return found


def test_protocol_headings_are_unique() -> None:
    known = headings(PROTOCOL.read_text())
    assert len(known) >= 10, known
    assert len(set(known)) == len(known), known


def test_every_citation_of_the_protocol_page_names_one_of_its_headings() -> None:
    known = headings(PROTOCOL.read_text())
    found = citations()
    assert found, "no citation found: is the scan still looking in the right places?"
    unknown = [(where, text[:40]) for where, text in found if cited_heading(text, known) is None]
    assert unknown == []


def test_a_wrapped_citation_is_read_across_the_comment_break() -> None:
    known = ["Errors", "File info and mode bits", "Handles"]
    assert cited_heading("File info and\n# mode bits).", known) == "File info and mode bits"
    assert cited_heading("Handles; Errors", known) == "Handles"
    assert cited_heading("Handle flags)", known) is None

"""README.md lists every test marked ``reference_only`` with its reason, and nothing else.

The list is what a reader of a conformance run needs to trust its skips, so it must not
drift from the markers: this reads both (the markers from the test sources, without
importing or collecting them) and compares.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
README_ENTRY = re.compile(r"^- `(?P<test>tests/[^`]+::[^`]+)`: (?P<reason>.+)$")


def _reference_only_reason(decorator: ast.expr) -> str | None:
    """The reason of a ``@pytest.mark.reference_only("...")`` decorator, else None."""
    if not isinstance(decorator, ast.Call) or not isinstance(decorator.func, ast.Attribute):
        return None
    if decorator.func.attr != "reference_only":
        return None
    args = [*decorator.args, *(k.value for k in decorator.keywords)]
    assert args and isinstance(args[0], ast.Constant), ast.unparse(decorator)
    return str(args[0].value)


def marked_tests() -> dict[str, str]:
    """``{"tests/dir/file.py::test_name": reason}`` for every marked test function."""
    found = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    reason = _reference_only_reason(decorator)
                    if reason is not None:
                        found[f"{path.relative_to(ROOT)}::{node.name}"] = reason
    return found


def readme_list() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("<!-- reference-only list -->", 2)
    assert len(section) == 3, "README.md: the reference-only list has lost its markers"
    entries = {}
    for line in section[1].strip().splitlines():
        match = README_ENTRY.match(line)
        assert match, f"README.md: not a list entry: {line!r}"
        entries[match["test"]] = match["reason"]
    return entries


def test_readme_lists_exactly_the_reference_only_tests() -> None:
    assert readme_list() == marked_tests()

"""Go's path helpers (``filepath.Clean``/``Dir``/``Base``, ``filesystem.NormalizePath``).

Python's ``posixpath.normpath`` keeps a leading ``//`` and differs in corner cases, and
error messages embed these exact results, so the Go functions are re-implemented here.
"""

from __future__ import annotations


def clean(path: str) -> str:
    """Go ``filepath.Clean`` for slash-separated paths."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part == "" or part == ".":
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    result = "/".join(out)
    if rooted:
        return "/" + result
    return result or "."


def normalize(path: str) -> str:
    """``filesystem.NormalizePath``: leading ``/``, cleaned, no trailing ``/``."""
    if path == "" or path == "/":
        return "/"
    if not path.startswith("/"):
        path = "/" + path
    path = clean(path)
    if path == ".":
        return "/"
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def dirname(path: str) -> str:
    """Go ``filepath.Dir``: everything but the last element, cleaned."""
    i = path.rfind("/")
    return clean(path[: i + 1])


def basename(path: str) -> str:
    """Go ``filepath.Base``: the last element; ``/`` for the root, ``.`` for empty."""
    if path == "":
        return "."
    path = path.rstrip("/")
    if path == "":
        return "/"
    return path[path.rfind("/") + 1 :]


def join(a: str, b: str) -> str:
    """Go ``filepath.Join`` of two elements."""
    if a == "":
        return clean(b) if b else ""
    if b == "":
        return clean(a)
    return clean(a + "/" + b)

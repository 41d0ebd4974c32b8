"""What every task of the mount is waiting for, for ``kill -USR1``: the first thing to
look at when a mount stops answering (a handler waiting on a lock, an event, the pool)."""

from __future__ import annotations

from collections.abc import Iterator

import trio


def _tasks(task: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
    yield task
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            yield from _tasks(child)


def describe_tasks() -> str:
    """One block per task: its name and where each of its frames waits."""
    lines: list[str] = []
    root = trio.lowlevel.current_root_task()
    if root is None:  # called outside trio.run: no tasks to describe
        return ""
    for task in _tasks(root):
        lines.append(f"task {task.name}:")
        for frame, lineno in task.iter_await_frames():
            code = frame.f_code
            lines.append(f"    {code.co_filename}:{lineno} in {code.co_name}")
    return "\n".join(lines)

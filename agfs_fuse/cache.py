"""Short-lived metadata caches keyed by remote path, with an injected clock.

``AttrCache``: attributes, filled by stats and directory listings (and by what this mount
itself made), so ``ls -l`` of N files costs one request instead of N+1. ``DirListings``:
the names a listing held, so a name that is not there needs no request. Entries live
``ttl`` seconds; every mutation made through the mount invalidates or updates what it
touched, and ``ChangeMarks`` keeps an answer that was on its way during a mutation from
bringing back what it changed. Each timeout is a number of seconds, or a function of the
path giving the one that holds there (a federated mount's backends each have their own:
``path_settings``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, KeysView

from . import paths
from .models import FileInfo

Clock = Callable[[], float]
Seconds = float | Callable[[str], float]
"""A timeout: the same for every path, or the one that holds for a path."""


def per_path(seconds: Seconds) -> Callable[[str], float]:
    if callable(seconds):
        return seconds
    return lambda _path: seconds


class ChangeMarks:
    """Which paths were changed after a moment (a *mark*).

    A request can be answered before a mutation and arrive after it: a listing sent while
    ``NAME.tmp`` is renamed to ``NAME`` lacks ``NAME``. Stored, it would be served as
    fresh for a whole timeout. So a fill carries the mark taken before its request, and is
    refused when what it describes (the path, or a directory above it) changed since.
    """

    LIMIT = 10_000

    def __init__(self) -> None:
        self._seq = 0
        self._at: dict[str, int] = {}  # path -> the last change to it or below it
        self._horizon = 0  # changes before this were forgotten: older marks are refused

    def mark(self) -> int:
        return self._seq

    def record(self, path: str) -> None:
        """``path`` and everything below it changed now."""
        self._seq += 1
        if len(self._at) >= self.LIMIT:
            self.forget_all()
        self._at[path] = self._seq

    def forget_all(self) -> None:
        """Everything changed (caches dropped): every mark taken before now is stale."""
        self._seq += 1
        self._at.clear()
        self._horizon = self._seq

    def changed_since(self, path: str, mark: int) -> bool:
        if mark == self._seq:
            return False
        if mark < self._horizon:
            return True
        while True:
            if self._at.get(path, 0) > mark:
                return True
            if path == "/":
                return False
            path = paths.split(path)[0]


class AttrCache:
    """Path -> FileInfo for ``ttl`` seconds.

    Every mutation drops a subtree (``invalidate_tree``), so the paths are also indexed by
    parent: dropping a subtree costs its size, not a scan of the whole cache (which holds
    ten thousand entries right after an ``ls -l`` of a big directory).

    Attributes of what this mount just made (``made``: a directory, a link) come from the
    request that made it, not from the server's answer: the type and size are certain, the
    times close, but the permission bits only asked for (the server's umask may have taken
    some away). So ``perm`` answers only for bits a server answer showed.
    """

    def __init__(self, ttl: Seconds, clock: Clock = time.monotonic, max_entries: int = 100_000):
        self.ttl = per_path(ttl)
        self._clock = clock
        self._max = max_entries
        self._entries: dict[str, tuple[float, FileInfo, bool]] = {}  # (expiry, info, made)
        self._children: dict[str, set[str]] = {}  # parent -> children with cached descendants
        self._changes = ChangeMarks()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: str) -> FileInfo | None:
        item = self._entries.get(path)
        if item is None or item[0] <= self._clock():
            if item is not None:
                del self._entries[path]
            self.misses += 1
            return None
        self.hits += 1
        return item[1]

    def peek(self, path: str) -> FileInfo | None:
        """Like ``get``, without counting a hit or a miss."""
        item = self._entries.get(path)
        return item[1] if item is not None and item[0] > self._clock() else None

    def perm(self, path: str) -> int | None:
        """The permission bits the server showed for ``path`` (not merely asked for by
        this mount when it made it), or None."""
        item = self._entries.get(path)
        if item is None or item[0] <= self._clock() or item[2]:
            return None
        return item[1].perm

    def mark(self) -> int:
        """Take before asking the server; pass to ``put`` as ``since``."""
        return self._changes.mark()

    def put(self, path: str, info: FileInfo, since: int | None = None) -> None:
        """Cache ``info``, unless ``path`` was invalidated after the mark ``since`` (the
        answer may predate that change); ``since=None`` for what the mount just changed."""
        self._put(path, info, since, made=False)

    def made(self, path: str, info: FileInfo) -> None:
        """Cache what this mount just made at ``path``, as its request described it (see
        the class: its permission bits are not known for certain)."""
        self._put(path, info, None, made=True)

    def _put(self, path: str, info: FileInfo, since: int | None, *, made: bool) -> None:
        ttl = self.ttl(path)
        if ttl <= 0:
            return
        if since is not None and self._changes.changed_since(path, since):
            return
        if len(self._entries) >= self._max:  # a memory bound: nothing changed on the server
            self._entries.clear()
            self._children.clear()
        self._entries[path] = (self._clock() + ttl, info, made)
        child = path
        while child != "/":
            parent, _ = paths.split(child)
            siblings = self._children.setdefault(parent, set())
            if child in siblings:
                break  # the chain above is indexed already
            siblings.add(child)
            child = parent

    def invalidate(self, path: str) -> None:
        self._changes.record(path)
        self._entries.pop(path, None)

    def invalidate_tree(self, path: str) -> None:
        if path == "/":
            self.clear()
            return
        self._changes.record(path)
        pending = [path]
        while pending:
            current = pending.pop()
            self._entries.pop(current, None)
            pending.extend(self._children.pop(current, ()))
        parent, _ = paths.split(path)
        self._children.get(parent, set()).discard(path)

    def clear(self) -> None:
        self._changes.forget_all()
        self._entries.clear()
        self._children.clear()


class DirListings:
    """What listings of directories said, for two uses.

    - *Missing names*: a listing's names answer lookups of names that are not in it,
      without a request, while it is younger than ``window`` (``attr_timeout``): a file
      another client made shows within that time, as a change to a cached attribute
      does. Longer in two cases: for ``ttl`` seconds (``-o dir_cache_timeout``; 0 = off),
      and while the mount itself is creating files in the directory (an untar, a
      ``cp -r``: ``CREATES_FOR_BURST``, each within ``burst_window`` of the last) for
      ``burst_window`` seconds (``negative_timeout``: the kernel caches each missing
      name that long anyway). A directory this mount just made is known empty
      (``made_empty``), as if listed then.
    - *Prefill*: after a few lookups in one directory within ``window`` seconds that
      nothing answered, one listing (which caches every entry's attributes and answers
      the next missing names) is cheaper than a stat per name: ``worth_listing`` says
      when, at most once per directory per window. While the mount is walking a tree
      (``git status``, ``tar x`` probe names in one directory after another: some
      directory needed a listing within the window) the first such lookup says so.

    Mutations made through the mount keep the names current (``added``, ``removed``).
    """

    CREATES_FOR_BURST = 2
    MISSES_BEFORE_LISTING = 2

    def __init__(
        self,
        ttl: Seconds,
        window: Seconds,
        clock: Clock = time.monotonic,
        *,
        burst_window: Seconds | None = None,
    ) -> None:
        self.ttl = per_path(ttl)
        self.window = per_path(window)
        self.burst_window = self.window if burst_window is None else per_path(burst_window)
        self._clock = clock
        # directory -> (listed at, names in the server's order)
        self._names: dict[str, tuple[float, dict[str, None]]] = {}
        self._misses: dict[str, tuple[float, int]] = {}
        self._listed: dict[str, float] = {}
        self._creating: dict[str, tuple[float, int]] = {}  # directory -> (last, count)
        self._walk_until = float("-inf")  # a directory was listed for its misses until then
        self._changes = ChangeMarks()

    def mark(self) -> int:
        """Take before asking for a listing; pass to ``put`` as ``since``."""
        return self._changes.mark()

    def put(self, directory: str, names: Iterable[str], since: int | None = None) -> None:
        """Keep a listing's names, unless the mount changed the directory (or one above
        it) after the mark ``since``: the listing may predate the change."""
        now = self._clock()
        self._misses.pop(directory, None)
        self._listed[directory] = now
        if len(self._listed) > 10_000:
            self._listed = {d: t for d, t in self._listed.items() if now - t <= self.window(d)}
            self._creating = {
                d: c for d, c in self._creating.items() if now - c[0] <= self.burst_window(d)
            }
        if since is not None and self._changes.changed_since(directory, since):
            return
        if self._keep(directory) > 0:
            if len(self._names) > 1000:
                self._names = {d: n for d, n in self._names.items() if now - n[0] < self._keep(d)}
            self._names[directory] = (now, dict.fromkeys(names))

    def names(self, directory: str) -> KeysView[str] | None:
        """The names of a listing that may answer for missing ones now, or None."""
        item = self._names.get(directory)
        if item is None:
            return None
        age = self._clock() - item[0]
        if age < self._answers(directory) or (
            age < self.burst_window(directory) and self._bursting(directory)
        ):
            return item[1].keys()
        if age >= self._keep(directory):
            del self._names[directory]
        return None

    def recent(self, directory: str) -> KeysView[str] | None:
        """The names of a listing taken less than ``window`` seconds ago (kept current by
        the mount's own changes), or None."""
        item = self._names.get(directory)
        if item is None or self._clock() - item[0] >= self.window(directory):
            return None
        return item[1].keys()

    def _answers(self, directory: str) -> float:
        """How long a listing of ``directory`` answers for the names it lacks."""
        return max(self.ttl(directory), self.window(directory))

    def _keep(self, directory: str) -> float:
        """How long a listing of ``directory`` can be of use."""
        return max(self.ttl(directory), self.window(directory), self.burst_window(directory))

    def made_empty(self, directory: str) -> None:
        """The mount just made ``directory``: it has no entries, as a listing taken now
        would say (so lookups in it and a listing of it need no request)."""
        self.put(directory, ())

    def created(self, path: str) -> None:
        """The mount made ``path``: a run of these in one directory is a burst."""
        parent, _ = paths.split(path)
        now = self._clock()
        last, count = self._creating.get(parent, (now, 0))
        window = self.burst_window(parent)
        self._creating[parent] = (now, count + 1 if now - last < window else 1)
        self.added(path)

    def _bursting(self, directory: str) -> bool:
        last, count = self._creating.get(directory, (0.0, 0))
        return count >= self.CREATES_FOR_BURST and self._clock() - last < self.burst_window(
            directory
        )

    def worth_listing(self, directory: str) -> bool:
        """Count a lookup that found nothing cached in ``directory``; True once there
        were enough of them within one window (at once during a creation burst or a
        walk), and the directory was not listed in it."""
        window = self.window(directory)
        if window <= 0:
            return False
        now = self._clock()
        if now - self._listed.get(directory, -window - 1) < window:
            return False
        if self._bursting(directory) or now < self._walk_until:
            return True  # the mount is filling it, or walking: one listing answers the rest
        since, count = self._misses.get(directory, (now, 0))
        if now - since > window:
            since, count = now, 0
        self._misses[directory] = (since, count + 1)
        if count + 1 < self.MISSES_BEFORE_LISTING:
            return False
        self._walk_until = now + window
        return True

    def added(self, path: str) -> None:
        parent, name = paths.split(path)
        self._changes.record(parent)
        item = self._names.get(parent)
        if item is not None:
            item[1][name] = None

    def landed(self, path: str) -> None:
        """The upload of ``path``, a name the mount shows already (made or written here),
        reached the server: a kept listing gets the name, and unlike ``added`` a listing
        in flight is not thrown away (its caller adds the names that landed meanwhile):
        background uploads land all through a creation burst."""
        parent, name = paths.split(path)
        item = self._names.get(parent)
        if item is not None:
            item[1][name] = None

    def removed(self, path: str) -> None:
        parent, name = paths.split(path)
        self._changes.record(parent)
        item = self._names.get(parent)
        if item is not None:
            item[1].pop(name, None)

    def invalidate_tree(self, path: str) -> None:
        self._changes.record(path)
        for directory in [d for d in self._names if paths.is_within(d, path)]:
            del self._names[directory]

    def forget_parent(self, path: str) -> None:
        """The outcome of a change to ``path`` is unknown: its parent must be listed anew."""
        self._changes.record(paths.split(path)[0])
        self._names.pop(paths.split(path)[0], None)

    def clear(self) -> None:
        self._changes.forget_all()
        self._names.clear()
        self._misses.clear()
        self._listed.clear()
        self._creating.clear()
        self._walk_until = float("-inf")


class KnownModes:
    """The permission bits this mount itself gave paths, for ``ttl`` seconds.

    An untar sets every file's mode right after making it, most often to the mode it was
    made with; the attribute cache cannot tell, since the file's upload dropped its entry.
    This remembers what this mount's own requests set, so a chmod to the same bits needs
    no request. It is exactly as stale as cached attributes (another client's chmod shows
    after ``ttl``), and every mutation of a path through the mount forgets it.
    """

    def __init__(self, ttl: Seconds, clock: Clock = time.monotonic, max_entries: int = 10_000):
        self.ttl = per_path(ttl)
        self._clock = clock
        self._max = max_entries
        self._modes: dict[str, tuple[float, int]] = {}

    def remember(self, path: str, perm: int) -> None:
        ttl = self.ttl(path)
        if ttl <= 0:
            return
        if len(self._modes) >= self._max:  # a memory bound: forgetting only costs a request
            self._modes.clear()
        self._modes[path] = (self._clock() + ttl, perm & 0o7777)

    def get(self, path: str) -> int | None:
        item = self._modes.get(path)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._modes[path]
            return None
        return item[1]

    def forget_tree(self, path: str) -> None:
        """``path`` and everything below it changed (a rename moves modes elsewhere)."""
        if path == "/":
            self._modes.clear()
            return
        for known in [p for p in self._modes if paths.is_within(p, path)]:
            del self._modes[known]

    def clear(self) -> None:
        self._modes.clear()

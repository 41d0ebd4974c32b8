"""The attribute cache expires by an injected clock, never by sleeping."""

from agfs_fuse.cache import AttrCache
from agfs_fuse.models import FileInfo


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def info(name: str, size: int = 1) -> FileInfo:
    return FileInfo(name, size, 0o644, False, False, 0)


def test_entries_expire_after_the_ttl():
    clock = FakeClock()
    cache = AttrCache(1.0, clock)
    cache.put("/a", info("a"))
    clock.now += 0.9
    assert cache.get("/a") == info("a")
    clock.now += 0.2
    assert cache.get("/a") is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_invalidate_tree_drops_descendants_only():
    cache = AttrCache(10, FakeClock())
    for path in ("/d", "/d/x", "/d/x/y", "/dx"):
        cache.put(path, info(path))
    cache.invalidate_tree("/d")
    assert cache.get("/d") is None and cache.get("/d/x/y") is None
    assert cache.get("/dx") is not None


def test_zero_ttl_caches_nothing():
    cache = AttrCache(0, FakeClock())
    cache.put("/a", info("a"))
    assert cache.get("/a") is None

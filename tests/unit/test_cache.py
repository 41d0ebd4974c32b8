"""The attribute cache expires by an injected clock, never by sleeping."""

from agfs_fuse.cache import AttrCache, ChangeMarks, DirListings, KnownModes
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


def test_invalidate_tree_finds_descendants_whose_parents_were_never_cached():
    cache = AttrCache(10, FakeClock())
    cache.put("/d/x/y/z", info("z"))
    cache.put("/d/w", info("w"))
    cache.put("/e/x", info("x"))
    cache.invalidate_tree("/d/x")
    assert cache.get("/d/x/y/z") is None
    assert cache.get("/d/w") is not None and cache.get("/e/x") is not None
    cache.put("/d/x/y/z", info("z"))  # cached again after the drop: found again
    cache.invalidate_tree("/d")
    assert cache.get("/d/x/y/z") is None and cache.get("/d/w") is None
    assert len(cache) == 1


def test_invalidate_root_drops_everything():
    cache = AttrCache(10, FakeClock())
    for path in ("/a", "/b/c"):
        cache.put(path, info(path))
    cache.invalidate_tree("/")
    assert len(cache) == 0


def test_a_full_cache_starts_over_instead_of_growing():
    cache = AttrCache(10, FakeClock(), max_entries=3)
    for n in range(5):
        cache.put(f"/d/f{n}", info(f"f{n}"))
    assert len(cache) <= 3
    assert cache.get("/d/f4") is not None


def test_listing_names_expire_after_the_ttl():
    clock = FakeClock()
    listings = DirListings(1.0, 1.0, clock)
    listings.put("/d", ["a", "b"])
    assert listings.names("/d") == {"a", "b"}
    clock.now += 1.1
    assert listings.names("/d") is None


def test_mutations_keep_listed_names_current():
    listings = DirListings(10, 1.0, FakeClock())
    listings.put("/d", ["a"])
    listings.added("/d/new")
    listings.removed("/d/a")
    assert listings.names("/d") == {"new"}
    listings.added("/other/x")  # a directory never listed stays unknown
    assert listings.names("/other") is None


def test_listing_is_worth_it_after_a_few_misses_within_the_window():
    clock = FakeClock()
    listings = DirListings(0, 1.0, clock)
    verdicts = [listings.worth_listing("/d") for _ in range(DirListings.MISSES_BEFORE_LISTING)]
    assert verdicts[-1] and not any(verdicts[:-1])
    clock.now += 5
    assert not listings.worth_listing("/d")
    clock.now += 5  # misses spread wider than the window never add up
    assert not listings.worth_listing("/d")


def test_a_directory_is_listed_at_most_once_per_window():
    clock = FakeClock()
    listings = DirListings(0, 1.0, clock)
    listings.put("/d", ["a"])
    assert not any(listings.worth_listing("/d") for _ in range(10))
    clock.now += 1.5
    verdicts = [listings.worth_listing("/d") for _ in range(DirListings.MISSES_BEFORE_LISTING)]
    assert verdicts[-1]


def test_without_dir_cache_timeout_a_listing_answers_for_attr_timeout():
    """A name another client makes is seen as soon as a changed attribute would be."""
    clock = FakeClock()
    listings = DirListings(0, 1.0, clock)
    listings.put("/d", ["a"])
    clock.now += 0.9
    assert listings.names("/d") == {"a"}
    clock.now += 0.1
    assert listings.names("/d") is None  # so a missing name is asked for again


def test_a_directory_made_here_is_known_empty_until_it_changes():
    clock = FakeClock()
    listings = DirListings(0, 1.0, clock)
    listings.made_empty("/d/new")
    recent = listings.recent("/d/new")
    assert listings.names("/d/new") == set() and recent is not None and list(recent) == []
    assert not listings.worth_listing("/d/new")  # as good as listed just now
    listings.added("/d/new/f")
    assert listings.names("/d/new") == {"f"}
    clock.now += 1.0
    assert listings.names("/d/new") is None and listings.recent("/d/new") is None


def test_unknown_outcome_forgets_the_parent_and_the_subtree():
    listings = DirListings(10, 1.0, FakeClock())
    for d in ("/p", "/p/d", "/p/d/e", "/q"):
        listings.put(d, [])
    listings.forget_parent("/p/d")
    listings.invalidate_tree("/p/d")
    assert listings.names("/p") is None and listings.names("/p/d/e") is None
    assert listings.names("/q") == set()


def test_zero_window_never_lists():
    listings = DirListings(0, 0, FakeClock())
    assert not any(listings.worth_listing("/d") for _ in range(5))


def test_during_a_walk_the_first_miss_in_another_directory_lists_it() -> None:
    """``git status`` and ``tar x`` probe names in one directory after another: once one
    directory needed a listing for its misses, the next directory is listed at its first."""
    clock = FakeClock()
    listings = DirListings(0, 1.0, clock)
    assert not listings.worth_listing("/a")
    assert listings.worth_listing("/a")  # the second miss
    clock.now += 0.5
    assert listings.worth_listing("/b")  # walking: at once
    clock.now += 1.0
    assert not listings.worth_listing("/c")  # the walk is over: misses count again


def test_a_creation_burst_lets_a_listing_answer_for_the_negative_timeout() -> None:
    """With ``negative_timeout`` over ``attr_timeout``, a listing answers for missing
    names that longer while the mount creates files in the directory."""
    clock = FakeClock()
    listings = DirListings(0, 0.5, clock, burst_window=2.0)
    listings.put("/d", ["old"])
    clock.now += 0.6  # older than attr_timeout
    assert listings.names("/d") is None
    listings.created("/d/one")
    assert listings.names("/d") is None  # one create is not a burst: ask the server
    listings.created("/d/two")
    assert listings.names("/d") == {"old", "one", "two"}
    assert listings.names("/elsewhere") is None


def test_a_burst_trusts_a_listing_no_longer_than_the_negative_timeout() -> None:
    clock = FakeClock()
    listings = DirListings(0, 0.5, clock, burst_window=1.0)
    listings.put("/d", [])
    listings.created("/d/a")
    listings.created("/d/b")
    clock.now += 0.9
    listings.created("/d/c")  # the burst goes on, but the listing is 0.9 s old
    assert listings.names("/d") == {"a", "b", "c"}
    clock.now += 0.2
    listings.created("/d/e")
    assert listings.names("/d") is None  # older than a missing name may be cached


def test_a_burst_ends_when_creating_stops() -> None:
    clock = FakeClock()
    listings = DirListings(0, 0.5, clock, burst_window=1.0)
    listings.created("/d/a")
    listings.created("/d/b")
    clock.now += 1.5
    listings.put("/d", ["a", "b"])
    clock.now += 0.6
    assert listings.names("/d") is None  # past attr_timeout and no burst: nothing
    listings.created("/d/c")
    assert listings.names("/d") is None  # the count started again
    listings.created("/d/e")
    assert listings.names("/d") == {"a", "b", "c", "e"}


def test_recent_listing_keeps_server_order_and_own_changes_for_one_window() -> None:
    clock = FakeClock()
    listings = DirListings(0, 1.0, clock)
    listings.put("/d", ["c", "a", "b"])
    listings.added("/d/new")
    listings.removed("/d/a")
    assert list(listings.recent("/d") or []) == ["c", "b", "new"]
    clock.now += 1.0
    assert listings.recent("/d") is None


def test_during_a_burst_a_stale_listing_is_worth_renewing_at_the_first_miss() -> None:
    clock = FakeClock()
    listings = DirListings(0, 1.0, clock)
    listings.put("/d", [])
    listings.created("/d/a")
    listings.created("/d/b")
    assert not listings.worth_listing("/d")  # listed within the window
    for name in ("c", "e"):  # the burst goes on, each create within the window
        clock.now += 0.6
        listings.created(f"/d/{name}")
    assert listings.names("/d") is None and listings.worth_listing("/d")


# -- answers that were on their way during a change ----------------------------------------


def test_a_stat_answered_across_an_invalidation_is_not_cached() -> None:
    cache = AttrCache(10, FakeClock())
    since = cache.mark()  # the stat is sent
    cache.invalidate_tree("/d")  # the mount renames /d/x meanwhile (or something above it)
    cache.put("/d/x", info("x"), since)  # the answer arrives
    cache.put("/e/y", info("y"), since)  # elsewhere: untouched by the change
    assert cache.get("/d/x") is None
    assert cache.get("/e/y") == info("y")
    later = cache.mark()  # sent after the change: its answer is current
    cache.put("/d/x", info("x", 2), later)
    assert cache.get("/d/x") == info("x", 2)


def test_dropping_the_caches_refuses_every_answer_on_its_way() -> None:
    cache = AttrCache(10, FakeClock())
    since = cache.mark()
    cache.clear()
    cache.put("/a", info("a"), since)
    cache.put("/b", info("b"))  # what the mount itself knows goes in
    assert (cache.get("/a"), cache.get("/b")) == (None, info("b"))


def test_a_listing_answered_across_a_rename_in_it_is_not_kept() -> None:
    clock = FakeClock()
    listings = DirListings(ttl=0, window=1.0, clock=clock)
    since = listings.mark()  # listing of /d sent: the server still has NAME.tmp
    listings.removed("/d/NAME.tmp")
    listings.added("/d/NAME")
    listings.put("/d", ["NAME.tmp"], since)
    assert listings.recent("/d") is None  # not served as fresh for a window
    listings.put("/d", ["NAME"], listings.mark())
    assert list(listings.recent("/d") or ()) == ["NAME"]


def test_a_listing_below_a_renamed_directory_is_not_kept() -> None:
    listings = DirListings(ttl=0, window=1.0, clock=FakeClock())
    since = listings.mark()
    listings.invalidate_tree("/a")
    listings.put("/a/b/c", ["x"], since)
    listings.put("/z", ["y"], since)
    assert listings.recent("/a/b/c") is None
    assert list(listings.recent("/z") or ()) == ["y"]


def test_change_marks_forget_old_changes_but_never_accept_a_mark_from_before() -> None:
    marks = ChangeMarks()
    since = marks.mark()
    for n in range(ChangeMarks.LIMIT + 5):
        marks.record(f"/f{n}")
    assert marks.changed_since("/f0", since)  # forgotten, still refused
    assert marks.changed_since("/unrelated", since)  # older than what is remembered
    now = marks.mark()
    assert not marks.changed_since("/unrelated", now)
    marks.record("/f0")
    assert marks.changed_since("/f0/below", now) and not marks.changed_since("/f1", now)


def test_what_the_mount_made_is_cached_without_claiming_its_permission_bits():
    """mkdir's mode may lose bits to the server's umask: a chmod to it must still go."""
    cache = AttrCache(10, FakeClock())
    cache.made("/d", FileInfo("d", 0, 0o775, True, False, 0))
    assert cache.peek("/d") is not None and cache.get("/d") is not None
    assert cache.perm("/d") is None
    cache.put("/d", FileInfo("d", 0, 0o755, True, False, 0))  # the server said so
    assert cache.perm("/d") == 0o755


def test_known_modes_expire_after_the_ttl():
    clock = FakeClock()
    modes = KnownModes(1.0, clock)
    modes.remember("/d/a", 0o100600)
    clock.now += 0.9
    assert modes.get("/d/a") == 0o600
    clock.now += 0.2
    assert modes.get("/d/a") is None


def test_known_modes_forget_a_tree_and_nothing_beside_it():
    modes = KnownModes(1.0, FakeClock())
    for path in ("/d", "/d/a", "/d/sub/b", "/dx", "/e"):
        modes.remember(path, 0o700)
    modes.forget_tree("/d")
    assert [modes.get(p) for p in ("/d", "/d/a", "/d/sub/b", "/dx", "/e")] == [
        None,
        None,
        None,
        0o700,
        0o700,
    ]


def test_known_modes_remember_nothing_without_a_ttl():
    modes = KnownModes(0.0, FakeClock())
    modes.remember("/a", 0o600)
    assert modes.get("/a") is None

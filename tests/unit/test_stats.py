"""Request statistics: counts, bytes and latency percentiles with an injected clock."""

from agfs_fuse.stats import RequestStats, percentile
from agfs_fuse.statsview import render


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([], 0.5) == 0
    assert percentile([7.0], 0.9) == 7


def test_snapshot_counts_requests_errors_and_bytes():
    now = [100.0]
    stats = RequestStats(clock=lambda: now[0])
    stats.record("GET /stat", 0.001)
    stats.record("GET /files", 0.004, received=4096)
    stats.record("PUT /files", 0.010, sent=1000, error="FileTooLarge")
    stats.add_received(10)
    now[0] += 2.5
    snap = stats.snapshot()
    assert snap["uptime_s"] == 2.5
    assert snap["requests_total"] == 3
    assert snap["requests"] == {"GET /files": 1, "GET /stat": 1, "PUT /files": 1}
    assert snap["errors"] == {"FileTooLarge": 1}
    assert (snap["bytes_sent"], snap["bytes_received"]) == (1000, 4106)
    assert snap["latency_ms"] == {"p50": 4.0, "p90": 10.0, "p99": 10.0, "max": 10.0}


def test_render_flattens_nested_keys_into_aligned_rows():
    text = render({"url": "http://h/api/v1", "latency_ms": {"p50": 1.5}, "errors": {}})
    lines = text.splitlines()
    assert lines[0].split() == ["url", "http://h/api/v1"]
    assert lines[1].split() == ["latency_ms.p50", "1.5"]
    assert lines[2].split() == ["errors", "-"]
    assert len({line.index(line.split()[1]) for line in lines}) == 1  # one value column

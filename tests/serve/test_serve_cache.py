"""The response caches: LRU order, LFU order with dynamic aging, the time to live, and the hit ratio."""

import pytest

from infertune.errors import ConfigError
from infertune.serve.cache import LfuCache, ResponseCache, make_cache


def test_lru_drops_the_least_recently_used():
    cache = ResponseCache(2)
    cache.put(b"a", 1)
    cache.put(b"b", 2)
    assert cache.get(b"a") == 1
    cache.put(b"c", 3)
    assert b"b" not in cache and b"a" in cache and b"c" in cache


def test_lfu_drops_the_least_frequently_used_oldest_first_among_equals():
    cache = LfuCache(3)
    for key in (b"a", b"b", b"c"):
        cache.put(key, key)
    for _ in range(3):
        cache.get(b"a")
    for _ in range(2):
        cache.get(b"b")
    cache.put(b"d", b"d")  # c: 1 use, fewest; evicted, it makes the age 1, so d starts at 1 + 1
    assert b"c" not in cache and {b"a", b"b", b"d"} == {k for k in (b"a", b"b", b"c", b"d") if k in cache}
    cache.put(b"e", b"e")  # d: priority 2, below b's 3 and a's 4
    assert b"d" not in cache and b"b" in cache and b"a" in cache
    assert cache.hits == 5 and cache.lookups == 5 and cache.hit_ratio == 1.0


def test_lfu_ages_out_an_entry_popular_long_ago():
    """LFU-DA: after enough evictions the age passes the old favourite's count, and newer entries that are used
    now outrank it; a plain LFU would keep it forever."""
    cache = LfuCache(3)
    cache.put(b"old", 0)
    for _ in range(5):
        cache.get(b"old")  # 6 uses, long ago
    for i in range(40):  # a stream of new keys, each used twice
        key = f"k{i}".encode()
        cache.put(key, i)
        cache.get(key)
    assert b"old" not in cache


def test_lfu_at_size_zero_and_ttl():
    off = LfuCache(0)
    off.put(b"a", 1)
    assert off.get(b"a") is None and len(off) == 0
    expiring = LfuCache(2, ttl_s=0.0)
    expiring.put(b"a", 1)
    assert expiring.get(b"a") is None


def test_an_unknown_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="--cache-policy must be one of lru, lfu, got 'fifo'"):
        make_cache("fifo", 10)


def test_a_served_lfu_cache_reports_its_hit_ratio(mlp_onnx):
    import httpx

    from serve_helpers import mlp_body, running

    with running(f"mlp={mlp_onnx}", "--cache-policy", "lfu", "--cache-size", "2") as server:
        for value in (0.1, 0.1, 0.1, 0.2, 0.3, 0.1):
            assert server.infer("mlp", mlp_body(value)).status_code == 200
        metrics = httpx.get(f"{server.url}/metrics").text
    ratio = next(float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith('infertune_cache_hit_ratio{model="mlp"}'))
    assert ratio == pytest.approx(3 / 6)  # 0.1 stays (most used) while 0.2 and 0.3 come and go

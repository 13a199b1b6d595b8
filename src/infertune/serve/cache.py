"""Response caches keyed by model and input bytes, with an optional time to live: LRU, or LFU with dynamic aging
(LFU-DA: an entry's priority is its hit count plus the priority of the last entry evicted, so entries popular
long ago give way to what is popular now). Both are used from the event loop only, so they need no lock."""

from __future__ import annotations

import heapq
import itertools
import time
from collections import OrderedDict
from typing import Any

POLICIES = ("lru", "lfu")


def make_cache(policy: str, size: int, ttl_s: float | None = None) -> "ResponseCache | LfuCache":
    if policy not in POLICIES:
        from infertune.errors import ConfigError

        raise ConfigError(f"--cache-policy must be one of {', '.join(POLICIES)}, got '{policy}'")
    return (LfuCache if policy == "lfu" else ResponseCache)(size, ttl_s)


class _Counted:
    hits = 0
    lookups = 0

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0


class ResponseCache(_Counted):
    """LRU: `size` entries at most (0 disables it); an entry older than `ttl_s` is a miss."""

    policy = "lru"

    def __init__(self, size: int, ttl_s: float | None = None):
        self.size = size
        self.ttl_s = ttl_s
        self._entries: OrderedDict[bytes, tuple[float, Any]] = OrderedDict()

    def get(self, key: bytes) -> Any | None:
        if not self.size:
            return None
        self.lookups += 1
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored, value = entry
        if self.ttl_s is not None and time.monotonic() - stored > self.ttl_s:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: bytes, value: Any) -> None:
        if not self.size:
            return
        self._entries[key] = (time.monotonic(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries


class LfuCache(_Counted):
    """LFU with dynamic aging: evicts the entry of lowest priority, priority = age at its last use + its uses;
    the age becomes the priority of each evicted entry. A heap with lazy deletion: O(log n) a hit or insert."""

    policy = "lfu"

    def __init__(self, size: int, ttl_s: float | None = None):
        self.size = size
        self.ttl_s = ttl_s
        self._entries: dict[bytes, list] = {}  # key -> [priority, uses, stored, value]
        self._heap: list[tuple[float, int, bytes]] = []
        self._order = itertools.count()  # ties: the least recently touched goes first
        self._age = 0.0

    def get(self, key: bytes) -> Any | None:
        if not self.size:
            return None
        self.lookups += 1
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.ttl_s is not None and time.monotonic() - entry[2] > self.ttl_s:
            del self._entries[key]
            return None
        entry[1] += 1
        self._touch(key, entry)
        self.hits += 1
        return entry[3]

    def put(self, key: bytes, value: Any) -> None:
        if not self.size:
            return
        entry = self._entries.get(key)
        if entry is not None:
            entry[2], entry[3] = time.monotonic(), value
            return
        while len(self._entries) >= self.size:
            self._evict()
        entry = self._entries[key] = [0.0, 1, time.monotonic(), value]
        self._touch(key, entry)

    def _touch(self, key: bytes, entry: list) -> None:
        entry[0] = self._age + entry[1]
        heapq.heappush(self._heap, (entry[0], next(self._order), key))
        if len(self._heap) > 4 * max(self.size, 16):  # stale heap entries: rebuild from the live ones
            self._heap = [(e[0], next(self._order), k) for k, e in self._entries.items()]
            heapq.heapify(self._heap)

    def _evict(self) -> None:
        while self._heap:
            priority, _, key = heapq.heappop(self._heap)
            entry = self._entries.get(key)
            if entry is not None and entry[0] == priority:
                del self._entries[key]
                self._age = priority
                return

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

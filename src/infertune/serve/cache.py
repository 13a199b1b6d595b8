"""An LRU response cache keyed by model and input bytes, with an optional time to live."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any


class ResponseCache:
    """`size` entries at most (0 disables it); an entry older than `ttl_s` is a miss. Used from the event loop
    only, so it needs no lock."""

    def __init__(self, size: int, ttl_s: float | None = None):
        self.size = size
        self.ttl_s = ttl_s
        self._entries: OrderedDict[bytes, tuple[float, Any]] = OrderedDict()

    def get(self, key: bytes) -> Any | None:
        if not self.size:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored, value = entry
        if self.ttl_s is not None and time.monotonic() - stored > self.ttl_s:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
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

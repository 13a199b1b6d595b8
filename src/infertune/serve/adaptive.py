"""Batching driven by a latency target (`--target-p99-ms`), as BentoML adapts its batching window: the batch
window (how long a batch may wait to fill) and cap (most rows in one engine call) follow what is measured, the
requests' time from arrival to answer inside the batcher and the engine's time by batch size, so that p99 stays
under the target while batches are as large as it allows.

Every `INTERVAL_S` (and only while requests flow) the p99 of the last second's requests is compared with the
target: above `HIGH` of it, the cap shrinks by a quarter and the window halves; below `LOW` of it, while more
rows wait than a batch takes, the cap doubles and the window grows. Either way, the worst case a request can
meet, waiting out the window and a running batch and then its own (window + 2 x engine time at the cap), is kept
under `WORST` of the target, with the engine time at the cap predicted from the measured times.
"""

from __future__ import annotations

from collections import deque

import numpy as np

INTERVAL_S = 0.1
WINDOW_S = 1.0
HIGH, LOW, WORST = 0.85, 0.6, 0.8
MIN_SAMPLES = 20


class LatencyTarget:
    def __init__(self, target_ms: float, max_batch_size: int, max_delay_ms: float):
        self.target = target_ms / 1000
        self.max_batch_size = max_batch_size
        self.delay_ceiling = min(max_delay_ms / 1000, self.target / 4) if max_delay_ms > 0 else self.target / 4
        self.delay = self.delay_ceiling / 2
        self.cap = max_batch_size
        self._latencies: deque[tuple[float, float]] = deque(maxlen=4096)  # (when answered, seconds)
        self._compute: dict[int, float] = {}  # rows -> moving average of engine seconds
        self._next = 0.0

    def observe_batch(self, rows: int, seconds: float) -> None:
        known = self._compute.get(rows)
        self._compute[rows] = seconds if known is None else 0.8 * known + 0.2 * seconds

    def observe_request(self, now: float, seconds: float) -> None:
        self._latencies.append((now, seconds))

    def p99(self, now: float) -> float | None:
        recent = [s for t, s in self._latencies if now - t <= WINDOW_S]
        return float(np.percentile(recent, 99)) if len(recent) >= MIN_SAMPLES else None

    def predicted(self, rows: int) -> float:
        """Engine seconds for `rows`: measured, or from the closest measured size scaled by rows (a batch of b
        rows costs at most b times one row, at least one row's time)."""
        known = dict(self._compute)  # a snapshot: engine threads add to it
        if rows in known:
            return known[rows]
        if not known:
            return 0.0
        nearest = min(known, key=lambda b: abs(b - rows))
        return known[nearest] * max(1.0, rows / nearest) if rows > nearest else known[nearest]

    def adjust(self, now: float, waiting_rows: int) -> bool:
        """Re-choose the window and cap (at most every INTERVAL_S); True when either changed."""
        if now < self._next:
            return False
        self._next = now + INTERVAL_S
        before = (self.delay, self.cap)
        p99 = self.p99(now)
        if p99 is not None and p99 > HIGH * self.target:
            self.cap = max(1, int(self.cap * 0.75))
            self.delay /= 2
        elif (p99 is None or p99 < LOW * self.target) and waiting_rows >= self.cap:
            self.cap = min(self.max_batch_size, self.cap * 2)
            self.delay = min(self.delay_ceiling, self.delay * 1.5 + 0.0002)
        while self.cap > 1 and self.delay + 2 * self.predicted(self.cap) > WORST * self.target:
            self.cap -= max(1, self.cap // 8)
        if self.delay + 2 * self.predicted(self.cap) > WORST * self.target:
            self.delay = max(0.0, WORST * self.target - 2 * self.predicted(self.cap))
        return (self.delay, self.cap) != before

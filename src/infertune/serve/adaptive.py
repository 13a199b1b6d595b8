"""Batching driven by a latency target (`--target-p99-ms`), as BentoML adapts its batching window: the batch
window (how long a batch may wait to fill) and cap (most rows in one engine call) follow what is measured, the
requests' time from arrival to answer inside the batcher and the engine's time by batch size, so that p99 stays
under the target while batches are as large as it allows.

Every `INTERVAL_S` (and only while requests flow) the p99 of the last second's requests is compared with the
target. Where the time goes decides the move:
- a backlog (more rows wait than a batch takes) with p99 past `LOW` of the target: the queue is what is slow,
  and smaller batches would drain it slower still, so the cap goes to the size class with the most rows per
  engine second measured (twice the largest measured while that one is the best);
- no backlog and p99 past `HIGH` of the target: the batches themselves are too slow, so the cap shrinks by a
  quarter and the window halves, but never below the cap that keeps up with `HEADROOM` times the load measured;
- p99 under `LOW` of the target with a backlog: the cap doubles and the window grows.
Outside a backlog, the worst case a request can meet, waiting out the window and a running batch and then its
own (window + 2 x engine time at the cap), is kept under `WORST` of the target, with the engine time at the cap
predicted from the measured times. A target that the load makes unreachable so costs no throughput: the server
then batches as a good fixed setting would (tests/serve/test_serve_adaptive.py simulates both cases).
"""

from __future__ import annotations

from collections import deque

import numpy as np

INTERVAL_S = 0.1
WINDOW_S = 1.0
HIGH, LOW, WORST = 0.85, 0.6, 0.8
MIN_SAMPLES = 20
HEADROOM = 1.2  # the cap is never cut below what keeps up with 1.2 times the load measured


class LatencyTarget:
    def __init__(self, target_ms: float, max_batch_size: int, max_delay_ms: float):
        self.target = target_ms / 1000
        self.max_batch_size = max_batch_size
        self.delay_ceiling = min(max_delay_ms / 1000, self.target / 4) if max_delay_ms > 0 else self.target / 4
        self.delay = self.delay_ceiling / 2
        self.cap = max_batch_size
        self._latencies: deque[tuple[float, float, int]] = deque(maxlen=4096)  # (when answered, seconds, rows)
        self._compute: dict[int, float] = {}  # rows -> moving average of engine seconds
        self._efficiency: dict[int, list[float]] = {}  # power-of-two size class -> decaying [rows, seconds]
        self._next = 0.0

    def observe_batch(self, rows: int, seconds: float) -> None:
        known = self._compute.get(rows)
        self._compute[rows] = seconds if known is None else 0.8 * known + 0.2 * seconds
        totals = self._efficiency.setdefault(1 << (rows.bit_length() - 1), [0.0, 0.0])
        totals[0] = 0.95 * totals[0] + rows
        totals[1] = 0.95 * totals[1] + seconds

    def most_efficient(self) -> int:
        """The cap to drain a backlog with: the size class with the most rows per engine second measured, or
        twice it when it is the largest measured (larger may be better still: a fixed cost per call amortises),
        up to --max-batch-size. A text model padded to its longest row can be faster in smaller batches, so this
        is measured, never assumed."""
        measured = {size: rows / seconds for size, (rows, seconds) in self._efficiency.items() if seconds > 0}
        if not measured:
            return self.max_batch_size
        best = max(measured, key=measured.get)
        return min(self.max_batch_size, 2 * best if best == max(measured) else best)

    def observe_request(self, now: float, seconds: float, rows: int = 1) -> None:
        self._latencies.append((now, seconds, rows))

    def p99(self, now: float) -> float | None:
        recent = [s for t, s, _ in self._latencies if now - t <= WINDOW_S]
        return float(np.percentile(recent, 99)) if len(recent) >= MIN_SAMPLES else None

    def rate(self, now: float) -> float:
        """Rows answered per second over the last WINDOW_S: the load the batches must keep up with."""
        return sum(rows for t, _, rows in self._latencies if now - t <= WINDOW_S) / WINDOW_S

    def keeps_up(self, now: float) -> int:
        """The smallest cap whose predicted rate exceeds the load by HEADROOM (--max-batch-size when none does):
        below it the queue grows whatever the target says."""
        load = self.rate(now) * HEADROOM
        for cap in range(1, self.max_batch_size + 1):
            seconds = self.predicted(cap)
            if seconds <= 0 or cap / seconds >= load:
                return cap
        return self.max_batch_size

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
        backlog = waiting_rows > self.cap  # more rows wait than a batch takes: the queue is what is slow
        draining = backlog and p99 is not None and p99 > LOW * self.target
        if draining:
            # Queueing, not batching, makes the latency: smaller batches than the most efficient would drain the
            # queue slower still (the failure of a controller that only shrinks). The window is moot: batches
            # fill at once.
            self.cap = self.most_efficient()
            self.delay = min(self.delay, self.delay_ceiling / 2)
        elif p99 is not None and p99 > HIGH * self.target:
            self.cap = max(min(self.cap, self.keeps_up(now)), int(self.cap * 0.75))
            self.delay /= 2
        elif (p99 is None or p99 < LOW * self.target) and backlog:
            self.cap = min(self.max_batch_size, self.cap * 2)
            self.delay = min(self.delay_ceiling, self.delay * 1.5 + 0.0002)
        if not draining:
            # The worst case of a request with no queue ahead (the window, a running batch, its own) stays under
            # the target. Not while draining a backlog: there the wait is the queue's, and a smaller batch only
            # makes it longer.
            floor = min(self.cap, self.keeps_up(now))
            while self.cap > floor and self.delay + 2 * self.predicted(self.cap) > WORST * self.target:
                self.cap = max(floor, self.cap - max(1, self.cap // 8))
            if self.delay + 2 * self.predicted(self.cap) > WORST * self.target:
                self.delay = max(0.0, WORST * self.target - 2 * self.predicted(self.cap))
        return (self.delay, self.cap) != before

"""Batching driven by a latency target: the controller on measured figures, and a served model exporting the
window and cap it chose."""

import random

import httpx
import numpy as np
import pytest

from infertune.serve.adaptive import LatencyTarget
from serve_helpers import mlp_body, running


def feed(target, now, latency_s, rows, seconds, count=50):
    for i in range(count):
        target.observe_request(now - 0.5 + i * 0.01, latency_s)
    target.observe_batch(rows, seconds)


def test_the_cap_and_window_shrink_when_p99_nears_the_target_and_grow_back_under_load():
    target = LatencyTarget(20.0, max_batch_size=32, max_delay_ms=5.0)
    assert target.cap == 32 and 0 < target.delay <= 0.005
    now = 10.0
    feed(target, now, 0.019, 32, 0.008)  # p99 19 ms of 20 with no queue: the batches themselves are too slow
    assert target.adjust(now, waiting_rows=3)
    assert target.cap < 32 and target.delay < 0.0025
    shrunk = target.cap
    now += 2.0  # a second later the queue is long and the answers fast
    feed(target, now, 0.004, shrunk, 0.002)
    assert target.adjust(now, waiting_rows=64)
    assert target.cap > shrunk


def test_a_backlog_is_drained_in_the_most_efficient_batches_measured_not_smaller_ones():
    """p99 past the target because requests queue: shrinking the batch would drain the queue slower still. The
    measured rate decides (a padded text model can be fastest in mid-sized batches)."""
    target = LatencyTarget(100.0, max_batch_size=64, max_delay_ms=5.0)
    for rows, seconds in ((1, 0.010), (2, 0.012), (4, 0.016), (8, 0.024), (16, 0.060), (32, 0.160)):
        for _ in range(10):
            target.observe_batch(rows, seconds)  # 8 rows: 333 rows/s, the best; 32 rows: 200
    now = 5.0
    feed(target, now, 0.300, 8, 0.024)  # p99 300 ms of 100
    target.adjust(now, waiting_rows=200)
    assert target.cap == 8
    target = LatencyTarget(100.0, max_batch_size=64, max_delay_ms=5.0)
    for rows, seconds in ((1, 0.010), (4, 0.013), (8, 0.016)):
        target.observe_batch(rows, seconds)  # the largest measured is the best: try twice it
    feed(target, now, 0.300, 8, 0.016)
    target.adjust(now, waiting_rows=200)
    assert target.cap == 16


def simulate(target, rate, seconds, cost, *, fixed=None, seed=0):
    """A served model in virtual time: Poisson arrivals at `rate`, one engine whose batch of b rows takes
    cost(b) seconds (+-20 %), the batcher's rule (wait up to the window for the batch to fill, up to the cap).
    Returns (p99 seconds, answered per second)."""
    rnd = random.Random(seed)
    arrivals, t = [], 0.0
    while t < seconds:
        t += rnd.expovariate(rate)
        arrivals.append(t)
    queue, latencies, i, now = [], [], 0, 0.0
    cap, delay = fixed or (0, 0.0)
    while i < len(arrivals) or queue:
        if not queue:
            now = max(now, arrivals[i])
        while i < len(arrivals) and arrivals[i] <= now:
            queue.append(arrivals[i])
            i += 1
        if target is not None:
            target.adjust(now, len(queue))
            cap, delay = target.cap, target.delay
        until = queue[0] + delay
        while len(queue) < cap and i < len(arrivals) and arrivals[i] <= until:
            now = max(now, arrivals[i])
            queue.append(arrivals[i])
            i += 1
        now = max(now, until) if len(queue) < cap else now
        batch, queue = queue[:cap], queue[cap:]
        took = cost(len(batch)) * rnd.uniform(0.8, 1.2)
        now += took
        if target is not None:
            target.observe_batch(len(batch), took)
        for arrived in batch:
            latencies.append(now - arrived)
            if target is not None:
                target.observe_request(now, now - arrived)
    return float(np.percentile(latencies, 99)), len(latencies) / now


@pytest.mark.parametrize("cost", [lambda b: 0.006 + 0.0046 * b, lambda b: 0.006 + 0.003 * b + 0.0001 * b * b],
                         ids=["fixed cost per call", "padding: mid-sized batches fastest"])
def test_at_90_percent_of_saturation_the_target_does_no_worse_than_the_better_fixed_setting(cost):
    """The load that a shrink-only controller lost: at 90 % of the best rate, p99 past a 100 ms target, it cut
    the batch, the queue grew, and p99 went to seconds. Now it matches the better of two fixed settings."""
    saturation = max(b / cost(b) for b in range(1, 33))
    rate = 0.9 * saturation
    ours = simulate(LatencyTarget(100.0, 32, 5.0), rate, 30, cost)
    fixed = [simulate(None, rate, 30, cost, fixed=setting) for setting in ((32, 0.005), (8, 0.002))]
    best = min(fixed)
    print(f"\np99 / answered per second at {rate:.0f}/s: target-driven {ours[0] * 1000:.0f} ms / {ours[1]:.0f}, "
          f"fixed 32 {fixed[0][0] * 1000:.0f} ms / {fixed[0][1]:.0f}, fixed 8 {fixed[1][0] * 1000:.0f} ms / "
          f"{fixed[1][1]:.0f}")
    assert ours[1] >= 0.97 * max(f[1] for f in fixed)
    assert ours[0] <= 1.6 * best[0]


def test_the_worst_case_stays_under_the_target_whatever_the_engine_costs():
    target = LatencyTarget(10.0, max_batch_size=64, max_delay_ms=5.0)
    for rows in (1, 8, 32, 64):
        target.observe_batch(rows, 0.0004 * rows)  # 64 rows take 25.6 ms, past the target on their own
    target.adjust(1.0, waiting_rows=100)
    assert target.delay + 2 * target.predicted(target.cap) <= 0.8 * 0.010 + 1e-9
    assert 1 <= target.cap < 64


def test_a_server_with_a_target_answers_and_exports_its_choice(mlp_onnx):
    with running(f"mlp={mlp_onnx}", "--target-p99-ms", "50", "--max-batch-size", "16") as server:
        for value in range(30):
            assert server.infer("mlp", mlp_body(value / 30)).status_code == 200
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'infertune_batch_cap{model="mlp"} 16.0' in metrics
        window = next(float(line.split()[-1]) for line in metrics.splitlines()
                      if line.startswith('infertune_batch_window_ms{model="mlp"}'))
        assert 0 < window <= 5.0
        assert server.client.get("/v2/models/mlp/config").json()["dynamic_batching"]["target_p99_ms"] == 50

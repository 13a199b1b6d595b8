"""Batching driven by a latency target: the controller on measured figures, and a served model exporting the
window and cap it chose."""

import httpx

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
    feed(target, now, 0.019, 32, 0.008)  # p99 19 ms of 20: too close
    assert target.adjust(now, waiting_rows=40)
    assert target.cap < 32 and target.delay < 0.0025
    shrunk = target.cap
    now += 2.0  # a second later the queue is long and the answers fast
    feed(target, now, 0.004, shrunk, 0.002)
    assert target.adjust(now, waiting_rows=64)
    assert target.cap > shrunk


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

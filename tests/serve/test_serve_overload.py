"""Overload, deadlines, failing items, a broken engine, tokens and SIGTERM, each against a real server on
loopback. `slow_mlp` sleeps 50 ms a call and raises on the marker value 13.0."""

import concurrent.futures
import signal
import time

import httpx
import pytest

from serve_helpers import mlp_body, pixels_body, running

SLOW = "infertune.testing.models:slow_mlp"


@pytest.fixture(scope="module")
def slow_server(mlp_data_npz):
    with running(SLOW, "--data", str(mlp_data_npz), "--name", "slow", "--max-batch-size", "8",
                 "--max-delay-ms", "20", "--max-queue", "4", "--cache-size", "0") as server:
        yield server


def post_many(server, bodies, **kwargs):
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda b: httpx.post(f"{server.url}/v2/models/slow/infer", json=b, timeout=30,
                                                  **kwargs), bodies))


def test_a_full_queue_answers_429_with_retry_after_and_nothing_crashes(slow_server):
    answers = post_many(slow_server, [mlp_body(0.01 * i) for i in range(24)])
    statuses = {a.status_code for a in answers}
    assert statuses <= {200, 429} and 429 in statuses and 200 in statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["retry-after"] == "1" and "--max-queue 4" in refused.json()["error"]
    assert slow_server.infer("slow", mlp_body()).status_code == 200


def test_a_missed_deadline_answers_504(slow_server):
    late = slow_server.infer("slow", mlp_body(parameters={"timeout_ms": 10}))
    assert late.status_code == 504 and "deadline of 10 ms passed" in late.json()["error"]
    header = slow_server.infer("slow", mlp_body(), headers={"X-Timeout-Ms": "10"})
    assert header.status_code == 504
    assert slow_server.infer("slow", mlp_body()).status_code == 200


def test_a_request_already_past_its_deadline_is_dropped_before_compute(slow_server):
    def batches():
        text = slow_server.client.get("/metrics").text
        return float(next(line.split()[-1] for line in text.splitlines()
                          if line.startswith('infertune_batch_size_count{model="slow"}')))

    before = batches()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        busy = pool.submit(slow_server.infer, "slow", mlp_body(0.3))
        time.sleep(0.02)
        late = pool.submit(slow_server.infer, "slow", mlp_body(0.4, parameters={"timeout_ms": 5}))
        assert late.result().status_code == 504 and busy.result().status_code == 200
    time.sleep(0.1)
    assert batches() == before + 1  # only the busy one's batch: the late one never reached the engine


def test_one_failing_item_fails_alone_inside_its_batch(slow_server):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        first = pool.submit(slow_server.infer, "slow", mlp_body(0.1))  # keeps the engine busy for 50 ms
        time.sleep(0.01)
        rest = [pool.submit(slow_server.infer, "slow", mlp_body(v)) for v in (0.2, 13.0, 0.3)]
        good_a, bad, good_b = (f.result() for f in rest)
    assert first.result().status_code == 200 and good_a.status_code == 200 and good_b.status_code == 200
    assert bad.status_code == 500 and "marker value 13.0" in bad.json()["error"]
    assert "Traceback" not in bad.text


def test_an_engine_returning_the_wrong_row_count_is_an_error(mlp_data_npz):
    with running("infertune.testing.models:drops_a_row", "--data", str(mlp_data_npz), "--name", "broken",
                 ready=False) as server:
        time.sleep(0.5)
        # its warm-up already fails: the server stays up, not ready, and says why
        ready = server.client.get("/v2/health/ready")
        assert ready.status_code == 503 and "warm-up failed" in ready.json()["error"]
        assert server.infer("broken", mlp_body()).status_code == 503
        assert server.client.get("/v2/health/live").status_code == 200


def test_a_token_is_required_when_set(tmp_path):
    (tmp_path / "token").write_text("s3cret\n")
    with running("digits-cnn", "--backend", "onnxruntime", "--token-file", str(tmp_path / "token"),
                 ready=False) as server:
        while server.client.get("/v2/health/ready").status_code != 200:  # probes need no token
            time.sleep(0.05)
        body = pixels_body([0.5] * 64)
        missing = server.infer("digits-cnn", body)
        assert missing.status_code == 401 and "missing Authorization header" in missing.json()["error"]
        wrong = server.infer("digits-cnn", body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "wrong token" in wrong.json()["error"]
        assert server.client.get("/metrics").status_code == 401
        assert server.infer("digits-cnn", body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert server.infer("digits-cnn", body, headers={"Authorization": "bearer s3cret"}).status_code == 200
        basic = server.infer("digits-cnn", body, headers={"Authorization": "Basic s3cret"})
        assert basic.status_code == 401 and "Bearer scheme" in basic.json()["error"]


def test_sigterm_under_load_answers_in_flight_requests_then_exits_0(mlp_data_npz):
    with running(SLOW, "--data", str(mlp_data_npz), "--name", "slow", "--max-batch-size", "1",
                 "--cache-size", "0") as server:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:  # 10 x 50 ms of work, one at a time
            in_flight = [pool.submit(server.infer, "slow", mlp_body(0.01 * i)) for i in range(10)]
            time.sleep(0.15)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.05)
            during = server.infer("slow", mlp_body(0.9))
            answers = [f.result() for f in in_flight]
        assert [a.status_code for a in answers] == [200] * 10
        assert during.status_code == 503 and "draining" in during.json()["error"]
        assert server.process.wait(30) == 0

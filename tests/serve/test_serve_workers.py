"""`--workers 2`: two processes on one port, metrics and statistics added up over both, ready only when both
are, and SIGTERM drains both, then exits 0."""

import concurrent.futures
import signal
import time

import httpx

from serve_helpers import pixels_body, running


def test_two_workers_share_the_port_add_up_their_metrics_and_drain_on_sigterm():
    with running("digits-cnn", "--backend", "onnxruntime", "--workers", "2", "--cache-size", "0") as server:
        assert "2 workers at http://" in "".join(server.lines)
        body = pixels_body([0.5] * 64)
        for _ in range(60):  # a new connection each: the kernel spreads them over the workers
            assert httpx.post(f"{server.url}/v2/models/digits-cnn/infer", json=body).status_code == 200
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'infertune_requests_total{model="digits-cnn",status="200"} 60.0' in metrics
        stats = httpx.get(f"{server.url}/v2/models/digits-cnn/stats").json()["model_stats"][0]
        assert stats["inference_count"] == 60
        time.sleep(0.3)
        both = {line for line in server.lines if "[worker" in line and "model 'digits-cnn' ready" in line}
        assert len(both) == 2
        refused = httpx.post(f"{server.url}/v2/repository/models/digits-cnn/unload")
        assert refused.status_code == 409 and "--workers" in refused.json()["error"]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            in_flight = [pool.submit(httpx.post, f"{server.url}/v2/models/digits-cnn/infer", json=body, timeout=30)
                         for _ in range(40)]
            server.process.send_signal(signal.SIGTERM)
            statuses = {f.result().status_code if not f.exception() else "refused" for f in in_flight}
        assert statuses <= {200, 503, "refused"}
        assert server.process.wait(60) == 0
        assert sum("stopped" in line for line in server.lines) == 3  # each worker, then the supervisor

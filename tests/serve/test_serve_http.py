"""Against a real `infertune serve digits-cnn` on loopback: the KServe v2 endpoints, every error status with a
message naming the problem, and the server still serving after each."""

import numpy as np
import pytest

from serve_helpers import pixels_body

DIGIT = np.linspace(0, 1, 64, dtype=np.float32)


def still_serving(server):
    response = server.infer("digits-cnn", pixels_body(DIGIT))
    assert response.status_code == 200, response.text


def test_health_and_metadata(digits_server):
    assert digits_server.client.get("/v2/health/live").json() == {"live": True}
    assert digits_server.client.get("/v2/health/ready").json() == {"ready": True}
    meta = digits_server.client.get("/v2/models/digits-cnn").json()
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert meta["outputs"][0]["shape"] == [-1, 10]
    assert digits_server.client.get("/v2/models/digits-cnn/ready").json()["ready"] is True


def test_infer_matches_the_engine_offline(digits_server):
    import infertune

    response = digits_server.infer("digits-cnn", pixels_body(DIGIT, id="r1"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "r1" and body["outputs"][0]["name"] == "logits" and body["outputs"][0]["shape"] == [1, 10]
    expected = infertune.load("digits-cnn", backend="onnxruntime").run({"pixels": DIGIT.reshape(1, 1, 8, 8)})
    np.testing.assert_allclose(body["outputs"][0]["data"], expected["logits"].ravel(), rtol=1e-5, atol=1e-5)


def test_binary_tensor_data_both_ways_matches_json(digits_server):
    """The binary tensor data extension, as tritonclient sends it: two rows in, logits back as raw float32."""
    import orjson

    rows = np.stack([DIGIT, DIGIT[::-1]]).reshape(2, 1, 8, 8)
    header = orjson.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [2, 1, 8, 8],
                                       "parameters": {"binary_data_size": rows.nbytes}}],
                           "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]})
    response = digits_server.infer("digits-cnn", header + rows.tobytes(),
                                   headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    meta = orjson.loads(response.content[:length])["outputs"][0]
    assert meta["parameters"] == {"binary_data_size": 2 * 10 * 4}
    logits = np.frombuffer(response.content[length:], "<f4").reshape(meta["shape"])
    as_json = digits_server.infer("digits-cnn", pixels_body(rows.ravel(), rows=2)).json()["outputs"][0]["data"]
    np.testing.assert_allclose(logits.ravel(), as_json, rtol=1e-6, atol=1e-6)

    short = digits_server.infer("digits-cnn", header + rows.tobytes()[:-4],
                                headers={"Inference-Header-Content-Length": str(len(header))})
    assert short.status_code == 400 and "only 508 bytes follow the JSON" in short.json()["error"]
    assert "binary_tensor_data" in digits_server.client.get("/v2").json()["extensions"]
    still_serving(digits_server)


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    ({"inputs": []}, 400, 'needs "inputs"'),
    (pixels_body(DIGIT[:60]), 400, "has 60 values; shape [1, 1, 8, 8] needs 64"),
    ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": DIGIT.tolist()}]}, 400,
     "input 'pixels' has shape [1, 64], expected [-1, 1, 8, 8]"),
    ({"inputs": [{"name": "pixels", "datatype": "INT64", "shape": [1, 1, 8, 8], "data": [1] * 64}]}, 400,
     "input 'pixels' has datatype 'INT64', expected FP32"),
    ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 1, 8, 8], "data": ["a"] * 64}]}, 400,
     "holds 'a' (str): send numbers"),
    ({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 8, 8], "data": [0.0] * 64}]}, 400,
     "input 'pixels' is missing"),
    ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 1, 8, 8], "data": [0.0] * 64},
                 {"name": "extra", "datatype": "FP32", "shape": [1], "data": [0.0]}]}, 400, "unknown input 'extra'"),
    (pixels_body([0.0] * 64 * 33, rows=33), 400, "more than the server's --max-batch-size 32"),
    (pixels_body(DIGIT, parameters={"timeout_ms": -1}), 400, "timeout_ms must be a positive number"),
])
def test_bad_requests_get_400_naming_the_problem_and_the_server_keeps_serving(digits_server, body, status, message):
    response = digits_server.infer("digits-cnn", body)
    assert response.status_code == status
    assert message in response.json()["error"]
    still_serving(digits_server)


def test_unknown_model_route_and_method(digits_server):
    response = digits_server.infer("resnet", pixels_body(DIGIT))
    assert response.status_code == 404 and "unknown model 'resnet'" in response.json()["error"]
    assert digits_server.client.get("/v2/nothing").status_code == 404
    assert "error" in digits_server.client.get("/v2/nothing").json()
    assert digits_server.client.get("/v2/models/resnet").status_code == 404
    still_serving(digits_server)


def test_an_oversized_body_gets_413(digits_server):
    big = pixels_body(np.random.default_rng(0).random(64 * 32), rows=32)  # about 40 KB, over --max-body-bytes 20000
    response = digits_server.infer("digits-cnn", big)
    assert response.status_code == 413 and "over the limit of 20000 bytes" in response.json()["error"]
    still_serving(digits_server)


def test_a_cache_hit_returns_the_output_of_the_miss(digits_server):
    def hits():
        text = digits_server.client.get("/metrics").text
        return float(next(line.split()[-1] for line in text.splitlines()
                          if line.startswith("infertune_cache_hits_total")))

    body = pixels_body(np.linspace(1, 0, 64).tolist())
    before = hits()
    miss = digits_server.infer("digits-cnn", body).json()
    hit = digits_server.infer("digits-cnn", body).json()
    assert hit["outputs"] == miss["outputs"] and hits() == before + 1


def test_requests_from_many_clients_are_batched_and_answered_right(digits_server):
    import concurrent.futures

    import infertune

    rng = np.random.default_rng(1)
    samples = rng.random((48, 1, 8, 8), dtype=np.float32)
    expected = infertune.load("digits-cnn", backend="onnxruntime").run({"pixels": samples})["logits"]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda x: digits_server.infer("digits-cnn", pixels_body(x.ravel().tolist())),
                                samples))
    got = np.array([a.json()["outputs"][0]["data"] for a in answers])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_metrics_are_prometheus_text(digits_server):
    text = digits_server.client.get("/metrics").text
    for name in ("infertune_requests_total", "infertune_queue_depth", "infertune_batch_size_bucket",
                 "infertune_queue_seconds_bucket", "infertune_compute_seconds_bucket", "infertune_cache_misses_total"):
        assert name in text
    assert 'infertune_requests_total{model="digits-cnn",status="400"}' in text


def test_loadtest_against_the_server(digits_server, cli, tmp_path):
    import json

    result = cli("loadtest", digits_server.url, "--model", "digits-cnn", "--concurrency", "4", "--requests", "200",
                 "--json", str(tmp_path / "load.json"))
    assert result.returncode == 0, result.stderr
    assert "p99 ms" in result.stdout and "200: 200" in result.stdout
    figures = json.loads((tmp_path / "load.json").read_text())
    assert figures["ok"] == 200 and figures["p50_ms"] > 0 and figures["throughput"] > 0
    bad = cli("loadtest", digits_server.url, "--model", "nope", "--requests", "5")
    assert bad.returncode == 2 and "does not serve model 'nope'" in bad.stderr


@pytest.mark.parametrize("binary", [[], ["--binary"]])
def test_loadtest_rows_sends_that_many_samples_a_request(digits_server, cli, tmp_path, binary):
    import json
    import re

    def rows_answered() -> float:  # by the engine, or by the cache (a binary request hits a JSON one's entry)
        text = digits_server.client.get("/metrics").text
        computed = float(re.search(r'infertune_batch_size_sum{model="digits-cnn"} (\S+)', text).group(1))
        return computed + 4 * float(re.search(r'infertune_cache_hits_total{model="digits-cnn"} (\S+)', text).group(1))

    before = rows_answered()
    result = cli("loadtest", digits_server.url, "--model", "digits-cnn", "--concurrency", "3", "--requests", "30",
                 "--rows", "4", *binary, "--json", str(tmp_path / "load.json"))
    assert result.returncode == 0, result.stderr
    figures = json.loads((tmp_path / "load.json").read_text())
    assert figures["ok"] == 30 and figures["rows"] == 4
    assert figures["items_per_s"] == pytest.approx(4 * figures["throughput"])
    assert rows_answered() - before == 120

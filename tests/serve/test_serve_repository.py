"""Two models side by side in one real server, driven by Triton's own client (`tritonclient.http`): infer on
each, model metadata, configuration, statistics, the repository index, unload and load."""

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from serve_helpers import metric, running


@pytest.fixture(scope="module")
def two_models(mlp_onnx):
    with running("digits=digits-cnn", f"mlp={mlp_onnx}", "--backend", "onnxruntime", "--cache-size", "8") as server:
        yield server, triton.InferenceServerClient(server.url.removeprefix("http://"))


def infer(client, model, name, array):
    tensor = triton.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array, binary_data=True)
    return client.infer(model, [tensor])


def test_two_models_answer_side_by_side_with_their_own_names(two_models):
    server, client = two_models
    assert client.is_server_ready() and client.is_model_ready("digits") and client.is_model_ready("mlp")
    pixels = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    logits = infer(client, "digits", "pixels", pixels)
    assert logits.get_response()["model_name"] == "digits" and logits.as_numpy("logits").shape == (3, 10)
    features = np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32)
    out = infer(client, "mlp", "input", features).as_numpy("output")
    import infertune

    expected = infertune.load("digits-cnn", backend="onnxruntime").run({"pixels": pixels})["logits"]
    np.testing.assert_allclose(logits.as_numpy("logits"), expected, rtol=1e-5, atol=1e-5)
    assert out.shape == (2, 10)
    assert client.get_model_metadata("digits")["inputs"] == [{"name": "pixels", "datatype": "FP32",
                                                              "shape": [-1, 1, 8, 8]}]
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.get_model_metadata("nope")


def test_model_configuration_as_triton_reports_it(two_models):
    _, client = two_models
    config = client.get_model_config("digits")
    assert config["name"] == "digits" and config["max_batch_size"] == 32 and config["backend"] == "onnxruntime"
    assert config["input"] == [{"name": "pixels", "data_type": "TYPE_FP32", "dims": [1, 8, 8]}]
    assert config["output"] == [{"name": "logits", "data_type": "TYPE_FP32", "dims": [10]}]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 5000
    assert config["instance_group"] == [{"count": 1, "kind": "KIND_CPU"}]


def test_statistics_count_inferences_and_add_up_their_durations(two_models):
    server, client = two_models
    before = client.get_inference_statistics("mlp")["model_stats"][0]
    rows = np.random.default_rng(2).standard_normal((4, 16)).astype(np.float32)
    infer(client, "mlp", "input", rows)
    infer(client, "mlp", "input", rows)  # the same again: a cache hit, no engine call
    stats = client.get_inference_statistics("mlp")["model_stats"][0]
    assert stats["name"] == "mlp" and stats["version"] == "1"
    assert stats["inference_count"] - before["inference_count"] == 4
    assert stats["execution_count"] - before["execution_count"] == 1
    success = stats["inference_stats"]["success"]
    assert success["count"] - before["inference_stats"]["success"]["count"] == 2
    assert stats["inference_stats"]["cache_hit"]["count"] - before["inference_stats"]["cache_hit"]["count"] == 1
    # the durations are the server's own metrics, added up (not asserted positive: a sub-millisecond answer can
    # read 0 where the machine's clock is coarse, as it was on one CI run)
    assert success["ns"] == round(metric(server, 'infertune_request_seconds_sum{model="mlp"}') * 1e9)
    assert stats["inference_stats"]["compute_infer"]["ns"] == round(
        metric(server, 'infertune_compute_seconds_sum{model="mlp"}') * 1e9)
    assert any(b["batch_size"] == 4 and b["compute_infer"]["count"] >= 1 for b in stats["batch_stats"])
    assert stats["last_inference"] > 1.7e12  # ms since the epoch


def test_the_repository_index_lists_each_model_and_unload_then_load_brings_it_back(two_models):
    server, client = two_models
    assert {(m["name"], m["state"]) for m in client.get_model_repository_index()} == {("digits", "READY"),
                                                                                     ("mlp", "READY")}
    client.unload_model("mlp")
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["mlp"]["state"] == "UNAVAILABLE" and "unloaded" in index["mlp"]["reason"]
    assert not client.is_model_ready("mlp")
    assert client.is_server_ready()  # an unloaded model does not hold the server back
    refused = server.client.post("/v2/models/mlp/infer", json={"inputs": []})
    assert refused.status_code == 503 and "unloaded" in refused.json()["error"]
    pixels = np.zeros((1, 1, 8, 8), np.float32)
    assert infer(client, "digits", "pixels", pixels).as_numpy("logits").shape == (1, 10)  # the other one serves on
    client.load_model("mlp")
    assert client.is_model_ready("mlp")
    assert infer(client, "mlp", "input", np.ones((1, 16), np.float32)).as_numpy("output").shape == (1, 10)


def test_load_and_unload_need_the_token_when_one_is_set(tmp_path, mlp_onnx):
    (tmp_path / "token").write_text("s3cret")
    with running(f"mlp={mlp_onnx}", "--token-file", str(tmp_path / "token")) as server:
        assert server.client.post("/v2/repository/models/mlp/unload").status_code == 401
        assert server.client.post("/v2/repository/index").status_code == 401
        ok = server.client.post("/v2/repository/models/mlp/unload", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_two_models_of_one_name_exit_2(cli, mlp_onnx):
    result = cli("serve", "digits-cnn", "digits-cnn")
    assert result.returncode == 2 and "two models are named 'digits-cnn'" in result.stderr

"""A Keras 3 model built and saved (.keras) by the test, loaded through Keras' torch backend: it runs as Keras runs
it, benchmarks on the command line on torch (fp32 and bf16), ONNX Runtime and OpenVINO, takes torch passes (ONNX
export, NNCF int8), and goes through the whole optimize search like a torch model."""

import json
import os
import sys

import numpy as np
import pytest


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    """A small image classifier (8x8x1 channels-last -> 10 scores) with a conv, batch norm and dropout."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "torch"
    import keras

    if keras.backend.backend() != "torch":
        pytest.skip(f"keras was imported with its {keras.backend.backend()} backend before this test")
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(8, 8, 1), name="pixels")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(10, name="scores")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    x_train = rng.standard_normal((64, 8, 8, 1)).astype(np.float32)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, rng.integers(0, 10, 64), epochs=1, batch_size=16, verbose=0)  # moving statistics move
    path = tmp_path_factory.mktemp("keras") / "small.keras"
    model.save(str(path))
    return path, model


@pytest.fixture()
def pixels() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((5, 8, 8, 1)).astype(np.float32)


def test_keras_file_runs_as_keras_runs_it(keras_file, pixels):
    import infertune

    path, model = keras_file
    loaded, _ = infertune.resolve(str(path))
    assert loaded.format == "torch" and loaded.task == "classification"
    assert [(s.name, s.shape) for s in loaded.signature.inputs] == [("pixels", ("batch", 8, 8, 1))]
    assert [s.name for s in loaded.signature.outputs] == ["scores"]
    got = infertune.load(loaded).run({"pixels": pixels})["scores"]
    want = np.asarray(model.predict(pixels, verbose=0))
    print(f"\nKeras file via infertune vs Keras predict: largest difference {np.abs(got - want).max():.2e}")
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_bench_keras_file_on_torch_and_onnxruntime(keras_file, cli, tmp_path):
    path, _ = keras_file
    out = tmp_path / "bench.json"
    data = tmp_path / "pixels.npz"
    np.savez(data, pixels=np.random.default_rng(3).standard_normal((16, 8, 8, 1)).astype(np.float32))
    result = cli("bench", str(path), "--data", str(data), "--backend", "torch,onnxruntime,openvino", "--batch-sizes",
                 "1", "--min-time", "0", "--min-runs", "3", "--json", str(out))
    assert result.returncode == 0, result.stderr
    print("\n" + result.stdout[-2000:])
    data = json.loads(out.read_text())
    assert [r["backend"] for r in data["results"]] == ["torch", "onnxruntime", "openvino"]
    assert all(r["error"] is None for r in data["results"]), [r["error"] for r in data["results"]]
    # the ONNX export, as ONNX Runtime and OpenVINO run it, agrees with Keras on torch
    assert [r["fidelity"]["top1_agreement"] for r in data["results"][1:]] == [1.0, 1.0]


def test_bench_keras_file_in_bf16_on_torch(keras_file, cli, tmp_path):
    """Keras layers cast their inputs to float32: bf16 runs under autocast, not by casting the weights."""
    path, _ = keras_file
    out = tmp_path / "bench.json"
    data = tmp_path / "pixels.npz"
    np.savez(data, pixels=np.random.default_rng(3).standard_normal((16, 8, 8, 1)).astype(np.float32))
    result = cli("bench", str(path), "--data", str(data), "--backend", "torch", "--precision", "bf16",
                 "--batch-sizes", "1", "--min-time", "0", "--min-runs", "3", "--json", str(out))
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(out.read_text())["results"]
    assert row["error"] is None and row["precision"] == "bf16", row["error"]
    assert row["fidelity"]["cosine_mean"] > 0.99, row["fidelity"]


def test_keras_model_takes_torch_passes(keras_file, pixels, tmp_path):
    import infertune
    from infertune.passes.export import ExportOnnx

    path, model = keras_file
    data = {"pixels": np.random.default_rng(2).standard_normal((32, 8, 8, 1)).astype(np.float32)}
    exported, (output,) = infertune.apply_passes(str(path), [ExportOnnx()], data=data, workdir=tmp_path)
    assert exported.format == "onnx"
    got = infertune.load(exported).run({"pixels": pixels})["scores"]
    np.testing.assert_allclose(got, np.asarray(model.predict(pixels, verbose=0)), atol=1e-4)
    print("\n" + "; ".join(output.notes))



def test_the_search_does_not_offer_passes_that_rewrite_torch_layers_to_a_keras_model(keras_file):
    """Pruning, distillation and QAT rewrite nn.Linear / nn.Conv layers, which Keras layers are not: the search
    leaves them out (rather than trying and failing them), and offers them to a torch model of the same shape."""
    from infertune.passes.registry import entry_for
    from infertune.resolver import load_model
    from infertune.search.space import candidate_recipes

    path, _ = keras_file
    trained = {"prune-structured", "prune-to-budget", "distill", "qat"}
    options = dict(has_calibration=True, has_training=True, max_drop=0.03, time_budget=400,
                   isa=("avx512_vnni", "avx512_bf16"))
    keras_passes = {entry_for(c).name for r in candidate_recipes(load_model(str(path)), **options) for c in r.passes}
    assert "export-onnx" in keras_passes and not keras_passes & trained, sorted(keras_passes)
    cnn = load_model("infertune.testing.models:tiny_cnn", data={"input": np.zeros((2, 1, 8, 8), np.float32)})
    torch_passes = {entry_for(c).name for r in candidate_recipes(cnn, **options) for c in r.passes}
    assert trained <= torch_passes, sorted(torch_passes)


def test_keras_model_takes_nncf_int8_on_openvino(keras_file, pixels, tmp_path):
    """OpenVINO folds the Cast the Keras export starts with, and its input port answers to that Cast's name too:
    the session and NNCF feed the model's own input name."""
    import infertune
    from infertune.passes.export import ExportOnnx
    from infertune.passes.quantize.openvino_backend import Int8Nncf

    path, model = keras_file
    data = {"pixels": np.random.default_rng(2).standard_normal((64, 8, 8, 1)).astype(np.float32)}
    quantized, _ = infertune.apply_passes(str(path), [ExportOnnx(), Int8Nncf(subset_size=64)], data=data,
                                          workdir=tmp_path)
    got = infertune.load(quantized, backend="openvino").run({"pixels": pixels})["scores"]
    want = np.asarray(model.predict(pixels, verbose=0))
    assert got.shape == want.shape and np.all(np.isfinite(got))
    cosine = np.sum(got * want, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cosine.min() > 0.95, cosine


@pytest.mark.slow
def test_optimize_a_keras_file_like_a_torch_model(keras_file, tmp_path):
    """The whole search: torch candidates (bf16 among them), the ONNX export on ONNX Runtime and OpenVINO, int8;
    every candidate gets a verdict, none of the runtimes fails on the Keras model, and the choice is confirmed."""
    import infertune
    from infertune.data import save_npz
    from infertune.report.terminal import optimize_table

    path, _ = keras_file
    rng = np.random.default_rng(4)
    data = tmp_path / "pixels.npz"
    save_npz(data, {"pixels": rng.standard_normal((160, 8, 8, 1)).astype(np.float32)})
    result = infertune.optimize(str(path), data=str(data), max_drop=0.02, out=tmp_path / "run", refine=False,
                                timing={"warmup": 1, "min_runs": 5, "min_seconds": 0.0, "max_runs": 40,
                                        "max_seconds": 2.0})
    optimize_table(result)
    by_backend: dict[str, list] = {}
    for c in result.candidates:
        assert c["status"] in ("ok", "rejected", "failed") and (c["status"] == "ok" or c["reason"]), c
        by_backend.setdefault(c["recipe"]["backend"]["name"], []).append(c)
    assert {"torch", "onnxruntime", "openvino"} <= set(by_backend), sorted(by_backend)
    failed = [(c["id"], c["reason"]) for c in result.candidates if c["status"] == "failed"
              and not c["recipe"]["passes"]]  # a runtime itself, with no pass, runs the Keras model
    assert not failed, failed
    assert any(c["precision"] == "bf16" and c["status"] != "failed" for c in by_backend["torch"])
    assert any(c["precision"] == "int8" and c["status"] != "failed" for c in result.candidates)
    assert result.best is not None and result.best["speedup"].get("confirmed") is not None


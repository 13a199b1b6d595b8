"""A Keras 3 model built and saved (.keras) by the test, loaded through Keras' torch backend: it runs as Keras runs
it, benchmarks on the command line on torch and ONNX Runtime, and takes torch passes (ONNX export)."""

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
    result = cli("bench", str(path), "--data", str(data), "--backend", "torch,onnxruntime", "--batch-sizes", "1",
                 "--min-time", "0", "--min-runs", "3", "--json", str(out))
    assert result.returncode == 0, result.stderr
    print("\n" + result.stdout[-1500:])
    data = json.loads(out.read_text())
    assert [r["backend"] for r in data["results"]] == ["torch", "onnxruntime"]
    assert all(r["error"] is None for r in data["results"]), [r["error"] for r in data["results"]]
    assert data["results"][1]["fidelity"]["top1_agreement"] == 1.0  # the ONNX export agrees with Keras on torch


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


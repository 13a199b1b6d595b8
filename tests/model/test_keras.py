"""A Keras 3 model built and saved (.keras) by the test, loaded through Keras' torch backend and, where it is a chain
of common layers, rebuilt from torch layers: it runs as Keras runs it, benchmarks on the command line on torch (fp32
and bf16), ONNX Runtime and OpenVINO, takes torch passes (ONNX export, NNCF int8, structured pruning), and goes
through the whole optimize search like a torch model. A Keras graph the rebuild cannot express stays on Keras'
backend and is not offered the passes that rewrite torch layers."""

import json
import os
import sys

import numpy as np
import pytest


def _keras():
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "torch"
    import keras

    if keras.backend.backend() != "torch":
        pytest.skip(f"keras was imported with its {keras.backend.backend()} backend before this test")
    keras.utils.set_random_seed(0)
    return keras


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    """A small image classifier (8x8x1 channels-last -> 10 scores) with a conv, batch norm and dropout."""
    keras = _keras()
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



@pytest.fixture(scope="module")
def keras_branch_file(tmp_path_factory):
    """A residual block (an Add of two paths): a graph, not a chain, which stays on Keras' torch backend."""
    keras = _keras()
    inputs = keras.Input(shape=(16,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    outputs = keras.layers.Dense(3, name="scores")(keras.layers.Add()([inputs, hidden]))
    path = tmp_path_factory.mktemp("keras-branch") / "residual.keras"
    keras.Model(inputs, outputs).save(str(path))
    return path


def test_a_keras_chain_is_rebuilt_from_torch_layers_and_computes_what_keras_does(tmp_path):
    """A Sequential model with most of the rebuilt layers (rescaling, strided and dilated valid convs, 'same' conv,
    pooling, batch norm on channels and on features, a flatten whose next Dense rows are reordered, activations as
    arguments and as layers): torch layers inside, Keras' predictions out."""
    import torch

    import infertune
    from infertune.resolver import load_model

    keras = _keras()
    model = keras.Sequential([
        keras.Input(shape=(20, 18, 3), name="image"),
        keras.layers.Rescaling(1 / 2.0, offset=-0.5),
        keras.layers.Conv2D(6, 3, strides=2, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Conv2D(8, 2, padding="same"),
        keras.layers.Activation("gelu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(5, 3, dilation_rate=2, padding="same", activation="tanh"),
        keras.layers.Flatten(),
        keras.layers.Dense(12, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(4, activation="softmax", name="probabilities"),
    ])
    rng = np.random.default_rng(5)
    images = rng.uniform(0, 2, (32, 20, 18, 3)).astype(np.float32)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(images, rng.integers(0, 4, 32), epochs=1, batch_size=8, verbose=0)  # moving statistics move
    path = tmp_path / "chain.keras"
    model.save(str(path))

    loaded = load_model(str(path))
    print(f"\n{loaded.meta['loaded_as']}")
    assert loaded.meta["loaded_as"].startswith("Keras layers rebuilt as torch layers"), loaded.meta["loaded_as"]
    kinds = {type(m) for m in loaded.module.modules()}
    assert {torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d, torch.nn.BatchNorm1d} <= kinds, kinds
    got = infertune.load(loaded).run({"image": images[:7]})["probabilities"]
    np.testing.assert_allclose(got, np.asarray(model.predict(images[:7], verbose=0)), atol=1e-5)


def test_a_keras_graph_the_rebuild_cannot_express_stays_on_keras_and_says_why(keras_branch_file):
    import infertune
    from infertune.resolver import load_model

    loaded = load_model(str(keras_branch_file))
    assert "Keras' torch backend" in loaded.meta["loaded_as"] and "branches" in loaded.meta["loaded_as"], \
        loaded.meta["loaded_as"]
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    assert infertune.load(loaded).run({"features": x})["scores"].shape == (3, 3)


def test_a_keras_chain_ending_in_a_raw_op_stays_on_keras(tmp_path):
    """`keras.ops.minimum` after the last layer is not a layer (Keras' `layers` leaves it out) and changes only
    large outputs, which a check on random inputs may miss: the rebuild refuses the model rather than drop it."""
    import infertune
    from infertune.resolver import load_model

    keras = _keras()
    inputs = keras.Input(shape=(16,), name="features")
    outputs = keras.ops.minimum(keras.layers.Dense(3)(keras.layers.Dense(16, activation="relu")(inputs)), 100.0)
    path = tmp_path / "capped.keras"
    keras.Model(inputs, outputs).save(str(path))
    loaded = load_model(str(path))
    assert "Keras' torch backend" in loaded.meta["loaded_as"] and "op" in loaded.meta["loaded_as"], \
        loaded.meta["loaded_as"]
    x = np.full((2, 16), 1e4, np.float32)
    got = infertune.load(loaded).run({"features": x})
    assert float(np.max(next(iter(got.values())))) <= 100.0


def test_the_search_offers_passes_that_rewrite_torch_layers_only_to_a_rebuilt_keras_model(keras_file,
                                                                                          keras_branch_file):
    """Pruning, distillation and QAT rewrite nn.Linear / nn.Conv layers: a Keras chain rebuilt from torch layers
    gets them as a torch model does; a Keras graph left on Keras' backend does not (rather than trying and failing
    them)."""
    from infertune.passes.registry import entry_for
    from infertune.resolver import load_model
    from infertune.search.space import candidate_recipes

    path, _ = keras_file
    trained = {"prune-structured", "prune-to-budget", "distill", "qat"}
    options = dict(has_calibration=True, has_training=True, max_drop=0.03, time_budget=400,
                   isa=("avx512_vnni", "avx512_bf16"))
    rebuilt = {entry_for(c).name for r in candidate_recipes(load_model(str(path)), **options) for c in r.passes}
    assert trained <= rebuilt, sorted(rebuilt)
    branch = load_model(str(keras_branch_file))
    on_keras = {entry_for(c).name for r in candidate_recipes(branch, **options) for c in r.passes}
    assert "export-onnx" in on_keras and not on_keras & trained, sorted(on_keras)


def test_a_rebuilt_keras_model_is_pruned_by_channels(keras_file, pixels, tmp_path):
    """Structured pruning cuts the rebuilt conv's channels, its batch norm and the Dense rows they feed (which the
    rebuild put in channels-first order), and the smaller model runs."""
    import torch

    import infertune
    from infertune.passes.prune import StructuredPrune

    path, model = keras_file
    rng = np.random.default_rng(6)
    data = {"pixels": rng.standard_normal((64, 8, 8, 1)).astype(np.float32)}
    pruned, (output,) = infertune.apply_passes(str(path), [StructuredPrune(amount=0.25, fine_tune_epochs=1)],
                                               data=data, workdir=tmp_path)
    print("\n" + "; ".join(output.notes))
    (conv,) = [m for m in pruned.module.modules() if isinstance(m, torch.nn.Conv2d)]
    (dense,) = [m for m in pruned.module.modules() if isinstance(m, torch.nn.Linear)]
    assert conv.out_channels == 6 and dense.in_features == 6 * 8 * 8, (conv, dense)
    got = infertune.load(pruned).run({"pixels": pixels})["scores"]
    assert got.shape == (5, 10) and np.all(np.isfinite(got))


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
    """Optimize over one candidate of each kind the search offers a rebuilt Keras model (torch bf16, the ONNX export
    on ONNX Runtime and OpenVINO, int8, structured pruning with fine-tuning): every candidate gets a verdict, none
    fails on the Keras model, and the choice is confirmed. (Which candidates the search offers is the test above.)"""
    import infertune
    from infertune.data import save_npz
    from infertune.passes.export import ExportOnnx
    from infertune.passes.prune import StructuredPrune
    from infertune.passes.quantize.onnx_backend import Int8Static
    from infertune.report.terminal import optimize_table
    from infertune.search.recipe import Recipe

    path, _ = keras_file
    rng = np.random.default_rng(4)
    data = tmp_path / "pixels.npz"
    save_npz(data, {"pixels": rng.standard_normal((160, 8, 8, 1)).astype(np.float32)})
    recipes = [Recipe(backend="torch", options=(("precision", "bf16"),)),
               Recipe(passes=(ExportOnnx(),), backend="onnxruntime"), Recipe(passes=(ExportOnnx(),), backend="openvino"),
               Recipe(passes=(ExportOnnx(), Int8Static()), backend="onnxruntime"),
               Recipe(passes=(StructuredPrune(amount=0.25, fine_tune_epochs=1),), backend="torch")]
    result = infertune.optimize(str(path), data=str(data), max_drop=0.02, out=tmp_path / "run", recipes=recipes,
                                timing={"warmup": 1, "min_runs": 5, "min_seconds": 0.0, "max_runs": 40,
                                        "max_seconds": 2.0})
    optimize_table(result)
    given = [c for c in result.candidates if not c["id"].endswith("-mixed")]
    assert len(given) == len(recipes)  # each once; an int8 candidate over the budget adds its mixed fallback
    fallbacks = [c["id"].removesuffix("-mixed") for c in result.candidates if c["id"].endswith("-mixed")]
    assert all(next(c for c in given if c["id"] == parent)["precision"] == "int8" for parent in fallbacks)
    failed = [(c["id"], c["reason"]) for c in result.candidates if c["status"] == "failed"]
    assert not failed, failed
    assert all(c["status"] in ("ok", "rejected") and (c["status"] == "ok" or c["reason"]) for c in result.candidates)
    assert any(c["precision"] == "bf16" for c in result.candidates)
    assert any(c["precision"] == "int8" for c in result.candidates)
    assert result.best is not None and result.best["speedup"].get("confirmed") is not None


import numpy as np
import pytest
import torch

from infertune.errors import DataError, UnsupportedModelError
from infertune.resolver import load_model
from infertune.testing.models import mlp_data, tiny_mlp

FACTORY = "infertune.testing.models:tiny_mlp"


def test_unknown_zoo_name_names_the_value_and_the_choices():
    with pytest.raises(UnsupportedModelError, match="unknown model 'resnet9000'.*minilm, digits-cnn"):
        load_model("resnet9000")


def test_missing_onnx_file_names_the_path(tmp_path):
    with pytest.raises(UnsupportedModelError, match="model file '.*missing.onnx' not found"):
        load_model(str(tmp_path / "missing.onnx"))


def test_corrupt_onnx_file_is_an_input_error(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(UnsupportedModelError, match="not a readable ONNX model"):
        load_model(str(path))


def test_onnx_signature_has_dynamic_batch(mlp_onnx):
    model = load_model(str(mlp_onnx))
    (spec,) = model.signature.inputs
    assert spec.name == "input" and spec.dtype == "float32" and spec.shape == ("batch", 16)
    assert model.task == "classification"


def test_factory_signature_comes_from_data():
    model = load_model(FACTORY, data=mlp_data(4))
    assert model.signature.input_names == ["input"]
    assert model.signature.outputs[0].shape == ("batch", 10)


def test_factory_without_data_says_which_arrays_it_needs():
    with pytest.raises(DataError, match="needs --data.*input"):
        load_model(FACTORY)


def test_factory_loads_safetensors_weights(tmp_path):
    from safetensors.torch import save_file

    state = {k: torch.zeros_like(v) for k, v in tiny_mlp().state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    model = load_model(FACTORY, weights=str(tmp_path / "w.safetensors"), data=mlp_data(4))
    assert all(float(p.detach().abs().sum()) == 0 for p in model.module.parameters())


def test_factory_loads_a_state_dict_with_weights_only(tmp_path):
    state = {k: torch.ones_like(v) for k, v in tiny_mlp().state_dict().items()}
    torch.save(state, tmp_path / "w.pt")
    model = load_model(FACTORY, weights=str(tmp_path / "w.pt"), data=mlp_data(4))
    assert all(bool((p == 1).all()) for p in model.module.parameters())


def test_factory_refuses_a_pickled_object(tmp_path):
    torch.save(tiny_mlp(), tmp_path / "whole.pt")  # a pickled module, not a state dict
    with pytest.raises(UnsupportedModelError, match="not a safetensors file or a plain state dict"):
        load_model(FACTORY, weights=str(tmp_path / "whole.pt"), data=mlp_data(4))


def test_factory_weights_that_do_not_fit_name_the_keys(tmp_path):
    from safetensors.torch import save_file

    save_file({"other.weight": torch.zeros(2, 2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(UnsupportedModelError, match="do not fit.*unexpected \\['other.weight'\\]"):
        load_model(FACTORY, weights=str(tmp_path / "w.safetensors"), data=mlp_data(4))


def test_unimportable_factory_names_the_module():
    with pytest.raises(UnsupportedModelError, match="cannot import 'no_such_pkg.mod'"):
        load_model("no_such_pkg.mod:build", data=mlp_data(4))


def test_example_inputs_fit_the_signature():
    model = load_model("digits-cnn")
    inputs = model.example_inputs(batch_size=3)
    model.signature.check_inputs(inputs)
    assert inputs["pixels"].shape == (3, 1, 8, 8)


def test_check_inputs_names_wrong_dtype():
    model = load_model("digits-cnn")
    with pytest.raises(DataError, match="'pixels' has dtype float64, expected float32"):
        model.signature.check_inputs({"pixels": np.zeros((1, 1, 8, 8))})

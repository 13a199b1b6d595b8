import numpy as np
import pytest

import infertune
from infertune.errors import DataError


def test_load_runs_a_zoo_model_on_a_chosen_backend():
    engine = infertune.load("digits-cnn", backend="openvino")
    out = engine.run({"pixels": np.zeros((3, 1, 8, 8), np.float32)})
    assert out["logits"].shape == (3, 10)


def test_engine_rejects_a_missing_input_naming_it():
    engine = infertune.load("digits-cnn")
    with pytest.raises(DataError, match="input 'pixels' is missing"):
        engine.run({"image": np.zeros((1, 1, 8, 8), np.float32)})

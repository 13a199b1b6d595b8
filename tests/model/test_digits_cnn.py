"""The shipped DigitsCNN: weights load, accuracy on held-out digits, thinner variants, size budget."""

import pytest
import torch

from infertune.data.digits import load_digits
from infertune.data.metrics import top1_accuracy
from infertune.errors import ConfigError
from infertune.model.digits_cnn import WEIGHTS_PATH, DigitsCNN, build_digits_cnn, load_digits_cnn


@pytest.fixture(scope="module")
def model():
    return load_digits_cnn()


def test_digits_cnn_weights_load_in_eval_mode(model):
    assert isinstance(model, DigitsCNN)
    assert not model.training


def test_digits_cnn_heldout_top1_is_at_least_095_in_eager_torch(model):
    heldout = load_digits().split("heldout")
    with torch.no_grad():
        logits = model(torch.from_numpy(heldout.inputs["pixels"])).numpy()
    assert logits.shape == (500, 10)
    assert top1_accuracy(logits, heldout.labels) >= 0.95


def test_digits_cnn_weight_file_is_at_most_1_mb():
    assert WEIGHTS_PATH.stat().st_size <= 1_000_000


def test_thinner_digits_cnn_maps_n_1_8_8_to_n_10():
    model = build_digits_cnn(conv1=8, conv2=16, conv3=24, hidden=32).eval()
    with torch.no_grad():
        out = model(torch.zeros(3, 1, 8, 8))
    assert out.shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in build_digits_cnn().parameters())


def test_build_digits_cnn_rejects_unknown_width_naming_it():
    with pytest.raises(ConfigError, match="'conv4'.*conv1, conv2, conv3, hidden"):
        build_digits_cnn(conv4=8)


def test_digits_cnn_rejects_non_positive_width():
    with pytest.raises(ConfigError, match="conv2 must be a positive integer, got 0"):
        DigitsCNN(conv2=0)

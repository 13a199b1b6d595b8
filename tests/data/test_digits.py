"""The digits zoo data set: shapes, value range, fixed disjoint splits, and a cheap `infertune.data` import."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import infertune.data
from infertune.data import load_dataset
from infertune.data.digits import INPUT_SPECS, load_digits
from infertune.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_digits_splits_have_500_200_1097_samples(digits):
    assert {name: len(split) for name, split in digits.splits.items()} == {
        "train": 1097, "calibration": 200, "heldout": 500,
    }


def test_digits_pixels_are_float32_n_1_8_8_in_unit_range(digits):
    for split in digits.splits.values():
        pixels = split.inputs["pixels"]
        assert pixels.dtype == np.float32
        assert pixels.shape == (len(split), 1, 8, 8)
        assert pixels.min() >= 0.0 and pixels.max() <= 1.0
    assert digits.split("train").inputs["pixels"].max() == 1.0


def test_digits_labels_are_int64_classes_0_to_9(digits):
    for split in digits.splits.values():
        assert split.labels.dtype == np.int64
        assert set(np.unique(split.labels)) <= set(range(10))
    assert set(np.unique(digits.split("heldout").labels)) == set(range(10))


def test_digits_splits_are_disjoint_and_cover_all_1797_images(digits):
    # the 1,797 source images are pairwise distinct, so an image's bytes identify it
    rows = {name: {s.tobytes() for s in split.inputs["pixels"]} for name, split in digits.splits.items()}
    assert not rows["heldout"] & rows["train"]
    assert not rows["heldout"] & rows["calibration"]
    assert not rows["calibration"] & rows["train"]
    assert len(rows["heldout"] | rows["calibration"] | rows["train"]) == 1797


def test_digits_splits_follow_seed_0_permutation(digits):
    from sklearn.datasets import load_digits as sklearn_load_digits

    perm = np.random.default_rng(0).permutation(1797)
    target = sklearn_load_digits().target
    np.testing.assert_array_equal(digits.split("heldout").labels, target[perm[:500]])
    np.testing.assert_array_equal(digits.split("calibration").labels, target[perm[500:700]])
    np.testing.assert_array_equal(digits.split("train").labels, target[perm[700:]])


def test_digits_loads_identically_twice(digits):
    again = load_digits()
    for name, split in digits.splits.items():
        np.testing.assert_array_equal(split.inputs["pixels"], again.split(name).inputs["pixels"])
        np.testing.assert_array_equal(split.labels, again.split(name).labels)


def test_load_dataset_digits_accepts_matching_input_specs():
    dataset = load_dataset("digits", input_specs=INPUT_SPECS)
    assert dataset.kind == "arrays" and dataset.name == "digits"


def test_load_dataset_digits_rejects_wrong_dtype_in_specs():
    with pytest.raises(DataError, match="'pixels'.*float32.*float16"):
        load_dataset("digits", input_specs={"pixels": ("float16", ("batch", 1, 8, 8))})


def test_unknown_split_name_raises_config_error_listing_splits(digits):
    with pytest.raises(ConfigError, match="'test'.*train, calibration, heldout"):
        digits.split("test")


def test_importing_infertune_data_does_not_import_torch_or_sklearn():
    src = str(Path(infertune.data.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    code = (
        "import sys, infertune.data\n"
        "heavy = [m for m in ('torch', 'sklearn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env)

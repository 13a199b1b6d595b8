"""The scikit-learn digits: 1,797 real handwritten 8x8 digits, with fixed train/calibration/heldout splits."""

from __future__ import annotations

import numpy as np

from infertune.data.dataset import Dataset, Split

INPUT_NAME = "pixels"
INPUT_SPECS: dict[str, tuple[str, tuple]] = {INPUT_NAME: ("float32", ("batch", 1, 8, 8))}
NUM_CLASSES = 10
NUM_SAMPLES = 1797
SPLIT_SEED = 0
HELDOUT_SIZE = 500
CALIBRATION_SIZE = 200


def load_digits() -> Dataset:
    """The digits data set: input "pixels" float32 (N, 1, 8, 8) in [0, 1], int64 labels 0-9.

    Splits from `np.random.default_rng(0).permutation(1797)`: heldout = the first 500,
    calibration = the next 200, train = the remaining 1,097.
    Example: `load_digits().split("heldout").inputs["pixels"].shape == (500, 1, 8, 8)`.
    """
    from sklearn.datasets import load_digits as sklearn_load_digits  # lazy: sklearn is slow to import

    raw = sklearn_load_digits()
    pixels = (np.asarray(raw.images, dtype=np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    labels = np.asarray(raw.target, dtype=np.int64)
    everything = Split(name="all", inputs={INPUT_NAME: pixels}, labels=labels)
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(everything))
    edge = HELDOUT_SIZE + CALIBRATION_SIZE
    parts = {"train": perm[edge:], "calibration": perm[HELDOUT_SIZE:edge], "heldout": perm[:HELDOUT_SIZE]}
    splits = {name: everything.take(idx, name=name) for name, idx in parts.items()}
    return Dataset(name="digits", splits=splits, kind="arrays")

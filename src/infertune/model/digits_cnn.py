"""A small CNN for the 8x8 digits data set, with pretrained weights shipped in the package.

Input "pixels" float32 (N, 1, 8, 8) in [0, 1]; output "logits" (N, 10). Channel widths are
constructor arguments so thinner variants (for pruning or distillation) share the architecture.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from infertune.errors import ConfigError, UnsupportedModelError

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "digits_cnn.safetensors"
INPUT_NAMES = ("pixels",)
OUTPUT_NAMES = ("logits",)
INPUT_SPECS: dict[str, tuple[str, tuple]] = {"pixels": ("float32", ("batch", 1, 8, 8))}
NUM_CLASSES = 10
DEFAULT_WIDTHS = {"conv1": 32, "conv2": 64, "conv3": 128, "hidden": 128}
WIDTHS_METADATA_KEY = "widths"


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


class DigitsCNN(nn.Module):
    """conv-BN-ReLU x2, pool to 4x4, conv-BN-ReLU, pool to 2x2, then two linear layers to 10 logits."""

    def __init__(self, conv1: int = 32, conv2: int = 64, conv3: int = 128, hidden: int = 128) -> None:
        super().__init__()
        for name, value in (("conv1", conv1), ("conv2", conv2), ("conv3", conv3), ("hidden", hidden)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"DigitsCNN width {name} must be a positive integer, got {value!r}")
        self.widths = {"conv1": conv1, "conv2": conv2, "conv3": conv3, "hidden": hidden}
        self.features = nn.Sequential(
            _conv_block(1, conv1),
            _conv_block(conv1, conv2),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            _conv_block(conv2, conv3),
            nn.MaxPool2d(2),  # 4x4 -> 2x2
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(conv3 * 2 * 2, hidden),
            nn.ReLU(),
            nn.Linear(hidden, NUM_CLASSES),
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(pixels))


def build_digits_cnn(**widths: int) -> DigitsCNN:
    """A freshly initialised DigitsCNN; `widths` override conv1, conv2, conv3, hidden.

    Example: `build_digits_cnn(conv1=16, conv2=32)` for a thinner variant.
    """
    unknown = sorted(set(widths) - set(DEFAULT_WIDTHS))
    if unknown:
        raise ConfigError(f"unknown DigitsCNN width {unknown[0]!r}: use any of {', '.join(DEFAULT_WIDTHS)}")
    return DigitsCNN(**{**DEFAULT_WIDTHS, **widths})


def load_digits_cnn() -> DigitsCNN:
    """The pretrained DigitsCNN in eval mode, from the weights shipped with the package."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not WEIGHTS_PATH.is_file():
        raise UnsupportedModelError(
            f"the digits CNN weights are missing at '{WEIGHTS_PATH}': reinstall infertune, or in a source "
            "checkout run `PYTHONPATH=src python scripts/train_digits_cnn.py`"
        )
    with safe_open(str(WEIGHTS_PATH), framework="pt") as handle:
        metadata = handle.metadata() or {}
    widths = json.loads(metadata.get(WIDTHS_METADATA_KEY, "{}"))
    model = build_digits_cnn(**widths)
    model.load_state_dict(load_file(str(WEIGHTS_PATH)), strict=True)
    return model.eval()


def widths_metadata(model: DigitsCNN) -> dict[str, str]:
    """safetensors metadata that lets `load_digits_cnn` rebuild the model with the same widths."""
    return {WIDTHS_METADATA_KEY: json.dumps(model.widths, sort_keys=True)}

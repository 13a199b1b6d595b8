"""torch modules around transformers models: named tensors in, one plain tensor out, so the model has a fixed
signature, runs on every backend and exports to ONNX."""

from __future__ import annotations

import torch
from torch import nn

from infertune.model.pooling import PooledEncoder


def pooled(encoder: nn.Module, modes: tuple[str, ...], normalize: bool) -> PooledEncoder:
    return PooledEncoder(encoder, modes, normalize).eval()


class SequenceClassifier(nn.Module):
    """Class scores (logits) of a sequence-classification model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class TokenClassifier(SequenceClassifier):
    """Per-token class scores (batch, tokens, labels) of a token-classification model."""


class ImageClassifier(nn.Module):
    """Class scores of an image-classification model (pixel_values in, logits out)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits

"""Sentence embeddings from a token encoder: pooling over the tokens (as sentence-transformers does), then
optionally L2 normalisation. Inputs are right-padded, as infertune's tokenizers pad them."""

from __future__ import annotations

import torch
from torch import nn

MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")  # sentence-transformers' order


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One pooling of token states `hidden` (batch, tokens, width) under `attention_mask` (batch, tokens)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    if mode == "lasttoken":
        last = (attention_mask.sum(dim=1) - 1).clamp(min=0)
        return hidden[torch.arange(hidden.shape[0]), last]
    if mode == "weightedmean":
        weights = torch.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype).view(1, -1, 1) * mask
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    summed = (hidden * mask).sum(dim=1)
    count = mask.sum(dim=1).clamp(min=1e-9)
    return summed / (count if mode == "mean" else torch.sqrt(count))


class PooledEncoder(nn.Module):
    """A transformers encoder, pooled over its tokens (the modes concatenated, in sentence-transformers' order),
    then L2-normalised when `normalize`."""

    def __init__(self, encoder: nn.Module, modes: tuple[str, ...] = ("mean",), normalize: bool = True):
        super().__init__()
        self.bert = encoder  # the attribute name earlier versions used, so saved state dicts keep their keys
        self.modes = tuple(m for m in MODES if m in modes)
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = [pool(hidden, attention_mask, mode) for mode in self.modes]
        embedding = pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=-1)
        return nn.functional.normalize(embedding, p=2.0, dim=-1) if self.normalize else embedding


class MeanPooledEncoder(PooledEncoder):
    """A BERT-style encoder, attention-masked mean pooling, L2 normalisation (as sentence-transformers)."""

    def __init__(self, bert: nn.Module):
        super().__init__(bert, ("mean",), normalize=True)

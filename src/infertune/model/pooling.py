"""Sentence embeddings from a token encoder: attention-masked mean pooling, then L2 normalisation."""

from __future__ import annotations

import torch
from torch import nn


class MeanPooledEncoder(nn.Module):
    """A BERT-style encoder, attention-masked mean pooling, L2 normalisation (as sentence-transformers)."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2.0, dim=-1)

"""Model surgery for structured pruning: which output units of a layer to keep, and slicing the layer and
every consumer of those units to match. Two shapes of model are handled: chains of conv / linear layers
(CNNs, MLPs, in module order) and BERT-style transformer layers (FFN neurons and attention heads)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Chain:
    producer: nn.Module            # Conv2d or Linear whose output units are pruned
    norm: nn.BatchNorm2d | None    # batch norm right after it
    consumer: nn.Module            # the next Conv2d or Linear, whose inputs follow


def _keep(scores: torch.Tensor, amount: float) -> torch.Tensor:
    count = max(1, int(round(len(scores) * (1 - amount))))
    return torch.sort(torch.topk(scores, count).indices).values


def _unit_scores(weight: torch.Tensor, norm: str, scores: dict | None, param: nn.Parameter) -> torch.Tensor:
    """Importance of each output unit (row) of a weight. `scores` holds, by id of the original parameter, the
    per-weight |gradient x weight| (taylor) or the per-unit mean |activation| (activation)."""
    if norm == "activation":
        return scores[id(param)]
    source = scores[id(param)] if norm == "taylor" else weight.detach()
    flat = source.reshape(source.shape[0], -1)
    return flat.abs().sum(dim=1) if norm in ("l1", "taylor") else flat.pow(2).sum(dim=1).sqrt()


def channel_chains(module: nn.Module) -> list[Chain]:
    """Consecutive conv/linear pairs in module order; the last layer (the model's outputs) is never pruned."""
    layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    chains = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            continue
        rest = layers[i + 1:]
        norm = rest[0] if rest and isinstance(rest[0], nn.BatchNorm2d) else None
        consumer = next((m for m in rest if isinstance(m, (nn.Conv2d, nn.Linear))), None)
        if consumer is not None and not (isinstance(consumer, nn.Conv2d) and getattr(consumer, "groups", 1) != 1):
            chains.append(Chain(layer, norm, consumer))
    return chains


def _slice_rows(layer: nn.Module, keep: torch.Tensor) -> None:
    layer.weight = nn.Parameter(layer.weight.detach()[keep].clone())
    if layer.bias is not None:
        layer.bias = nn.Parameter(layer.bias.detach()[keep].clone())
    if isinstance(layer, nn.Conv2d):
        layer.out_channels = len(keep)
    else:
        layer.out_features = len(keep)


def _slice_inputs(layer: nn.Module, keep: torch.Tensor, units: int) -> None:
    weight = layer.weight.detach()
    if isinstance(layer, nn.Conv2d):
        layer.weight = nn.Parameter(weight[:, keep].clone())
        layer.in_channels = len(keep)
        return
    spatial = weight.shape[1] // units  # a linear after flatten sees units x spatial positions
    grouped = weight.reshape(weight.shape[0], units, spatial)[:, keep, :]
    layer.weight = nn.Parameter(grouped.reshape(weight.shape[0], len(keep) * spatial).clone())
    layer.in_features = len(keep) * spatial


def prune_chains(chains: list[Chain], amount: float, *, norm: str = "l1", scores: dict | None = None) -> None:
    """Choose every layer's units first (scores are keyed by the original parameters), then cut."""
    plans = [(chain, _keep(_unit_scores(chain.producer.weight, norm, scores, chain.producer.weight), amount))
             for chain in chains]
    for chain, keep in plans:
        _cut(chain, keep)


def _cut(chain: Chain, keep: torch.Tensor) -> None:
    producer = chain.producer
    units = producer.weight.shape[0]
    _slice_rows(producer, keep)
    if chain.norm is not None:
        bn = chain.norm
        bn.weight = nn.Parameter(bn.weight.detach()[keep].clone())
        bn.bias = nn.Parameter(bn.bias.detach()[keep].clone())
        bn.running_mean = bn.running_mean[keep].clone()
        bn.running_var = bn.running_var[keep].clone()
        bn.num_features = len(keep)
    _slice_inputs(chain.consumer, keep, units)


def bert_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules()
            if hasattr(m, "intermediate") and hasattr(m, "output") and hasattr(m, "attention")
            and hasattr(getattr(m.attention, "self", None), "query")]


def prune_bert_layer(layer: nn.Module, amount: float, *, heads: bool, norm: str = "l1",
                     scores: dict | None = None) -> None:
    up, down = layer.intermediate.dense, layer.output.dense
    if norm == "activation":  # the neuron's mean |output| after the nonlinearity: what the down projection reads
        ffn_scores = scores[id(up.weight)]
    else:
        ffn_scores = _unit_scores(up.weight, norm, scores, up.weight) + \
            _unit_scores(down.weight.t(), "l1" if norm == "taylor" else norm, None, down.weight)
    keep = _keep(ffn_scores, amount)
    _slice_rows(up, keep)
    _slice_inputs(down, keep, len(ffn_scores))
    if heads:
        _prune_heads(layer.attention, amount, norm, scores)


def _prune_heads(attention: nn.Module, amount: float, norm: str, scores: dict | None) -> None:
    attn = attention.self
    size = attn.attention_head_size
    count = attn.num_attention_heads
    if norm == "activation":  # the head's mean |context|, what the output projection reads
        per_row = scores[id(attn.query.weight)]
    else:
        per_row = sum(_unit_scores(p.weight, norm, scores, p.weight) for p in (attn.query, attn.key, attn.value))
    head_scores = per_row.reshape(count, size).sum(dim=1)
    kept_heads = _keep(head_scores, amount)
    rows = torch.cat([torch.arange(h * size, (h + 1) * size) for h in kept_heads.tolist()])
    for projection in (attn.query, attn.key, attn.value):
        _slice_rows(projection, rows)
    dense = attention.output.dense
    dense.weight = nn.Parameter(dense.weight.detach()[:, rows].clone())
    dense.in_features = len(rows)
    attn.num_attention_heads = len(kept_heads)
    attn.all_head_size = len(kept_heads) * size


def activation_scores(module: nn.Module, batches) -> dict:
    """Mean |activation| of every prunable unit, measured on `batches` (lists of input tensors) with forward hooks:
    a conv/linear chain's unit by what its consumer reads (after batch norm and the nonlinearity), an FFN neuron by
    what the down projection reads, an attention head by what the output projection reads. Keyed by the id of
    the producing weight, as prune_chains and prune_bert_layer look them up."""
    sums: dict[int, torch.Tensor] = {}
    counts: dict[int, int] = {}
    hooks = []

    def watch(consumer: nn.Module, key: int, units: int) -> None:
        def hook(_, inputs):
            x = inputs[0].detach()
            if isinstance(consumer, nn.Conv2d):
                per_unit = x.abs().transpose(0, 1).reshape(x.shape[1], -1)
            elif x.dim() == 2 and x.shape[1] != units:  # a linear after flatten: units x spatial positions
                per_unit = x.abs().reshape(x.shape[0], units, -1).transpose(0, 1).reshape(units, -1)
            else:
                per_unit = x.abs().reshape(-1, x.shape[-1]).t()
            sums[key] = sums.get(key, 0) + per_unit.sum(dim=1)
            counts[key] = counts.get(key, 0) + per_unit.shape[1]
        hooks.append(consumer.register_forward_pre_hook(hook))

    layers = bert_layers(module)
    if layers:
        for layer in layers:
            watch(layer.output.dense, id(layer.intermediate.dense.weight), layer.intermediate.dense.out_features)
            watch(layer.attention.output.dense, id(layer.attention.self.query.weight),
                  layer.attention.output.dense.in_features)
    else:
        for chain in channel_chains(module):
            watch(chain.consumer, id(chain.producer.weight), chain.producer.weight.shape[0])
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                module(*batch)
    finally:
        for h in hooks:
            h.remove()
        module.train(was_training)
    return {key: sums[key] / counts[key] for key in sums}

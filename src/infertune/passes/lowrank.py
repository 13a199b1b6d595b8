"""Low-rank factorization: a Linear (or conv, weights reshaped) replaced by two thinner ones from its SVD,
keeping the rank that retains a share of the spectrum's energy, and only where it is measured faster."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from infertune.errors import ConfigError
from infertune.passes.layer_timing import input_shapes, speedup
from infertune.passes.registry import Checked, param, PassContext, PassOutput, register


@dataclass(frozen=True)
class LowRank(Checked):
    energy: float = param(0.9, "share of the squared singular values kept; sets each layer's rank",
                          search=(0.9, 0.95))
    min_speedup: float = param(1.05, "a layer is factored only where the factored form is measured this much faster")
    fine_tune_epochs: int = param(0, "epochs on the train split afterwards (labels, or distillation)")
    lr: float = param(1e-4, "fine-tuning learning rate")


def _factor(layer, energy: float):
    """Two layers equal to `layer` up to the discarded singular values, or None when no FLOPs are saved."""
    import torch
    from torch import nn

    weight = layer.weight.detach()
    matrix = weight.reshape(weight.shape[0], -1)
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    kept = torch.cumsum(s ** 2, 0) / torch.sum(s ** 2)
    rank = int(torch.searchsorted(kept, torch.tensor(energy)).item()) + 1
    out_dim, in_dim = matrix.shape
    if rank * (out_dim + in_dim) >= out_dim * in_dim:
        return None, rank
    root = s[:rank].sqrt()
    first_w, second_w = root[:, None] * vh[:rank], u[:, :rank] * root[None, :]
    if isinstance(layer, nn.Linear):
        first, second = nn.Linear(in_dim, rank, bias=False), nn.Linear(rank, out_dim, bias=layer.bias is not None)
        first.weight.data, second.weight.data = first_w, second_w
    else:
        first = nn.Conv2d(layer.in_channels, rank, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                          bias=False)
        second = nn.Conv2d(rank, out_dim, 1, bias=layer.bias is not None)
        first.weight.data = first_w.reshape(rank, *weight.shape[1:])
        second.weight.data = second_w.reshape(out_dim, rank, 1, 1)
    if layer.bias is not None:
        second.bias.data = layer.bias.detach().clone()
    return nn.Sequential(first, second).eval(), rank


@register("lowrank", LowRank, formats=("torch",), stage="structure", searched=False,
          summary="SVD factorization of Linear / conv layers, kept only where measured faster")
def lowrank(model, config: LowRank, ctx: PassContext) -> PassOutput:
    from torch import nn

    if not 0 < config.energy < 1:
        raise ConfigError(f"lowrank energy must be between 0 and 1, got {config.energy}")
    module = copy.deepcopy(model.module).eval()
    shapes = input_shapes(model, module, (nn.Linear, nn.Conv2d), model.example_inputs(batch_size=1))
    rows, replaced = [], 0
    for parent_name, parent in list(module.named_modules()):
        for name, layer in list(parent.named_children()):
            label = f"{parent_name}.{name}" if parent_name else name
            if not isinstance(layer, (nn.Linear, nn.Conv2d)) or id(layer) not in shapes:
                continue
            if isinstance(layer, nn.Conv2d) and layer.groups != 1:
                continue
            factored, rank = _factor(layer, config.energy)
            if factored is None:
                rows.append({"layer": label, "rank": rank, "speedup": None, "factored": False})
                continue
            gain = speedup(layer, factored, shapes[id(layer)])
            keep = gain >= config.min_speedup
            if keep:
                setattr(parent, name, factored)
                replaced += 1
            rows.append({"layer": label, "rank": rank, "speedup": round(gain, 3), "factored": keep})
    result = dataclasses.replace(model, module=module)
    if replaced and config.fine_tune_epochs:
        from infertune.passes.training import train

        split = ctx.split("train")
        if split is not None:
            train(result, split, epochs=config.fine_tune_epochs, lr=config.lr,
                  teacher=model.module, say=ctx.say)
    notes = [f"factored {replaced} of {len(rows)} layers at {config.energy:.0%} energy"]
    if not replaced:
        notes.append("no speed-up on this hardware: no layer's factored form was measured faster (or saved FLOPs)")
    return PassOutput(result, notes=notes, details={"layers": rows})

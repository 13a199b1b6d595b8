"""Weight sharing: each layer's weights clustered (k-means) into 2^bits centroids, stored as packed indices
plus a codebook, so the artifact is smaller on disk; optionally the centroids are fine-tuned."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np

from infertune.errors import ConfigError, UnsupportedModelError
from infertune.passes.registry import Checked, param, PassContext, PassOutput, register


@dataclass(frozen=True)
class WeightSharing(Checked):
    bits: int = param(6, "centroids per layer = 2^bits, from 4 to 8", search=(4, 6, 8), low=4, high=8)
    layer_types: tuple[str, ...] = param(("Linear", "Conv2d"), "module types whose weights are clustered")
    min_size: int = param(1024, "layers with fewer weights stay as they are")
    fine_tune_epochs: int = param(0, "epochs of centroid fine-tuning on the train split (indices stay fixed)", low=0)
    lr: float = param(1e-4, "centroid fine-tuning learning rate")


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on scalars with linear initialisation (keeps the rare large weights, Han et al. 2016)."""
    centroids = np.linspace(values.min(), values.max(), k)
    for _ in range(iterations):
        order = np.argsort(centroids)
        centroids = centroids[order]
        edges = (centroids[1:] + centroids[:-1]) / 2
        labels = np.searchsorted(edges, values)
        sums = np.bincount(labels, weights=values, minlength=k)
        counts = np.bincount(labels, minlength=k)
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
    edges = (centroids[1:] + centroids[:-1]) / 2
    return np.searchsorted(edges, values).astype(np.uint8), centroids.astype(np.float32)


@register("weight-sharing", WeightSharing, formats=("torch",), stage="structure", objectives=("size",),
          backends=("torch",),
          summary="k-means weight clustering, stored as packed indices + codebook (smaller on disk)")
def weight_sharing(model, config: WeightSharing, ctx: PassContext) -> PassOutput:
    import torch

    from infertune.passes.storage import save_compact

    if not 4 <= config.bits <= 8:
        raise ConfigError(f"weight-sharing bits must be from 4 to 8, got {config.bits}")
    module = copy.deepcopy(model.module).eval()
    names = {id(m): n for n, m in module.named_modules()}
    layers = [m for m in module.modules()
              if type(m).__name__ in config.layer_types and m.weight.numel() >= config.min_size]
    if not layers:
        raise UnsupportedModelError(f"'{model.name}' has no {', '.join(config.layer_types)} layer with at least "
                                    f"{config.min_size} weights to cluster")
    codebooks = {}
    for i, layer in enumerate(layers):
        ctx.say(f"clustering layer {i + 1}/{len(layers)}")
        weight = layer.weight.detach().float().numpy()
        indices, centroids = kmeans_1d(weight.ravel().astype(np.float64), 2 ** config.bits)
        codebooks[f"{names[id(layer)]}.weight"] = (indices, centroids, config.bits)
    if config.fine_tune_epochs and ctx.split("train") is not None:
        _fine_tune_centroids(model, module, codebooks, config, ctx)
    with torch.no_grad():
        for name, (indices, centroids, _) in codebooks.items():
            target = module.get_parameter(name)
            target.copy_(torch.from_numpy(centroids[indices].reshape(target.shape)))
    path = ctx.workdir / "weights.compact.safetensors"
    size = save_compact(module, path, codebooks=codebooks)
    dense = sum(v.numel() * v.element_size() for v in module.state_dict().values())
    result = dataclasses.replace(model, module=module, meta={**model.meta, "storage_path": str(path)})
    return PassOutput(result, notes=[f"{len(layers)} layers share {2 ** config.bits} values each; stored "
                                     f"{size / 1e6:.2f} MB (dense {dense / 1e6:.2f} MB); dense kernels still run "
                                     f"the expanded weights, so no speed-up is expected"],
                      details={"stored_bytes": size, "dense_bytes": dense})


def _fine_tune_centroids(model, module, codebooks, config: WeightSharing, ctx: PassContext) -> None:
    """Train only the codebooks: each weight is codebook[index], gradients gather onto the centroids."""
    import torch
    from torch.nn.utils import parametrize

    from infertune.passes.training import train

    class Shared(torch.nn.Module):
        def __init__(self, indices, centroids, shape):
            super().__init__()
            self.register_buffer("indices", torch.from_numpy(indices.astype(np.int64)).reshape(shape))
            self.codebook = torch.nn.Parameter(torch.from_numpy(centroids.copy()))

        def forward(self, _weight):
            return self.codebook[self.indices]

    for p in module.parameters():
        p.requires_grad_(False)
    owners = {}
    for name, (indices, centroids, _) in codebooks.items():
        owner_name, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        parametrize.register_parametrization(owner, attr, Shared(indices, centroids, owner.weight.shape))
        owners[name] = owner
    split = ctx.split("train")
    train(dataclasses.replace(model, module=module), split, epochs=config.fine_tune_epochs, lr=config.lr,
          teacher=model.module, say=ctx.say)
    for name, owner in owners.items():
        shared = owner.parametrizations.weight[0]
        indices, _, bits = codebooks[name]
        codebooks[name] = (indices, shared.codebook.detach().numpy().copy(), bits)
        parametrize.remove_parametrizations(owner, "weight", leave_parametrized=True)
    for p in module.parameters():
        p.requires_grad_(True)

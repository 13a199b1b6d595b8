"""Pruning. Unstructured magnitude pruning zeroes weights (same dense size and speed, said so); structured
pruning removes whole conv channels, hidden neurons, FFN neurons and attention heads, giving a genuinely
smaller dense model, then fine-tunes (labels) or distils from the unpruned model (embeddings) to recover."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from infertune.errors import ConfigError, PassError, UnsupportedModelError
from infertune.passes.registry import Checked, param, PassContext, PassOutput, register
from infertune.passes.structure import bert_layers, channel_chains, prune_bert_layer, prune_chains


@dataclass(frozen=True)
class MagnitudePrune(Checked):
    sparsity: float = param(0.5, "fraction of weights set to zero", search=(0.5, 0.8), low=0.0, high=1.0,
                             open_high=True)
    scope: str = param("global", "global: one threshold over all layers; layer: the same fraction in each",
                       choices=("global", "layer"))
    layer_types: tuple[str, ...] = param(("Linear", "Conv2d"), "module types whose weights are pruned")
    storage: str = param("dense", "dense, or sparse: matrices at least half zero stored as CSR (smaller on disk)",
                         choices=("dense", "sparse"))


@register("prune-magnitude", MagnitudePrune, formats=("torch",), stage="structure", objectives=("size",),
          backends=("torch",), summary="unstructured magnitude pruning (zeros; dense kernels gain no speed from them)")
def prune_magnitude(model, config: MagnitudePrune, ctx: PassContext) -> PassOutput:
    import torch

    if not 0 < config.sparsity < 1:
        raise ConfigError(f"prune-magnitude sparsity must be between 0 and 1, got {config.sparsity}")
    module = copy.deepcopy(model.module)
    weights = [m.weight for m in module.modules() if type(m).__name__ in config.layer_types]
    if not weights:
        raise UnsupportedModelError(f"'{model.name}' has no {', '.join(config.layer_types)} layers to prune")
    with torch.no_grad():
        if config.scope == "global":
            magnitudes = torch.cat([w.detach().abs().flatten() for w in weights])
            threshold = torch.kthvalue(magnitudes, max(1, int(config.sparsity * magnitudes.numel()))).values
            for w in weights:
                w.mul_(w.abs() > threshold)
        else:
            for w in weights:
                k = max(1, int(config.sparsity * w.numel()))
                w.mul_(w.abs() > torch.kthvalue(w.abs().flatten(), k).values)
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    meta = model.meta
    if config.storage == "sparse":
        from infertune.passes.storage import save_compact

        path = ctx.workdir / "weights.compact.safetensors"
        size = save_compact(module, path, sparse_threshold=0.5)
        meta = {**model.meta, "storage_path": str(path)}
        stored = f"stored sparse: {size / 1e6:.2f} MB"
    else:
        stored = "stored dense, the artifact is no smaller"
    return PassOutput(dataclasses.replace(model, module=module, meta=meta),
                      notes=[f"{zeros / total:.1%} of {total} weights are zero ({config.scope}); {stored}; dense "
                             f"kernels run no faster on zeros: see sparse-linear"],
                      details={"sparsity": zeros / total})


@dataclass(frozen=True)
class StructuredPrune(Checked):
    amount: float = param(0.5, "fraction of channels / neurons / heads removed", search=(0.25, 0.5, 0.75),
                          low=0.0, high=1.0, open_low=True, open_high=True)
    importance: str = param("l1", "l1 or l2 weight norm, taylor (|gradient x weight|) or activation (mean "
                                  "|output| of the unit) on calibration data",
                            search=("l1", "taylor"), choices=("l1", "l2", "taylor", "activation"))
    heads: bool = param(True, "transformers: prune attention heads too (else FFN neurons only)")
    fine_tune_epochs: int = param(10, "epochs on the train split afterwards: labels, or distillation from the "
                                      "unpruned model's outputs")
    lr: float = param(1e-3, "fine-tuning learning rate")


@register("prune-structured", StructuredPrune, formats=("torch",), stage="structure",
          needs=("training", "torch-layers"),
          summary="remove whole channels / neurons / heads (a smaller dense model), then fine-tune")
def prune_structured(model, config: StructuredPrune, ctx: PassContext) -> PassOutput:
    if not 0 < config.amount < 1:
        raise ConfigError(f"prune-structured amount must be between 0 and 1, got {config.amount}")
    teacher = model.module
    module = copy.deepcopy(teacher)
    scores = importance_scores(model, module, config.importance, ctx)
    before = sum(p.numel() for p in module.parameters())
    notes = []
    layers = bert_layers(module)
    if layers:
        for layer in layers:
            prune_bert_layer(layer, config.amount, heads=config.heads, norm=config.importance, scores=scores)
        notes.append(f"removed {config.amount:.0%} of FFN neurons" + (" and attention heads" if config.heads else "")
                     + f" in {len(layers)} layers")
        heads = {layer.attention.self.num_attention_heads for layer in layers}
        meta = {**model.meta, "num_heads": heads.pop()} if len(heads) == 1 and "num_heads" in model.meta else model.meta
    else:
        chains = channel_chains(module)
        if not chains:
            raise PassError(f"prune-structured found no conv/linear chain or BERT layer in '{model.name}'")
        prune_chains(chains, config.amount, norm=config.importance, scores=scores)
        notes.append(f"removed {config.amount:.0%} of the channels/neurons of {len(chains)} layers")
        meta = model.meta
    after = sum(p.numel() for p in module.parameters())
    notes.append(f"parameters {before} -> {after} ({after / before:.0%})")
    _check_runs(model, module)
    pruned = dataclasses.replace(model, module=module, meta=meta)
    train_split = ctx.split("train")
    if config.fine_tune_epochs > 0:
        if train_split is None:
            raise UnsupportedModelError("prune-structured fine-tuning needs training data: pass --data, or set "
                                        "fine_tune_epochs=0")
        from infertune.passes.training import train

        ctx.say(f"fine-tuning {config.fine_tune_epochs} epochs on {len(train_split)} samples")
        train(pruned, train_split, epochs=config.fine_tune_epochs, lr=config.lr,
              teacher=teacher, say=ctx.say)
        notes.append(f"fine-tuned {config.fine_tune_epochs} epochs on the train split ("
                     + ("labels and " if train_split.labels is not None and model.task == "classification" else "")
                     + "the unpruned model's outputs)")
    return PassOutput(pruned, notes=notes, details={"parameters_before": before, "parameters_after": after})


def _check_runs(model, module) -> None:
    """Surgery assumed module order is data-flow order; a model where it is not fails here, clearly."""
    import torch

    example = model.example_inputs(batch_size=2)
    try:
        with torch.no_grad():
            module(*[torch.from_numpy(example[n]) for n in model.signature.input_names])
    except RuntimeError as e:
        raise PassError(f"prune-structured could not rewire '{model.name}' (its layers are not a "
                                    f"simple chain): {str(e).splitlines()[0]}") from e


def importance_scores(model, module, importance: str, ctx: PassContext) -> dict | None:
    """What the data-driven criteria measure on `module` before it is cut (None for the weight norms)."""
    if importance == "taylor":
        return _taylor_scores(model, module, ctx)
    if importance == "activation":
        import torch

        from infertune.passes.onnx_utils import sample_batches
        from infertune.passes.structure import activation_scores

        split = ctx.require("calibration", "activation importance needs calibration data: pass --data, or use "
                                           "importance=l1")
        batches = [[torch.from_numpy(b[n]) for n in model.signature.input_names]
                   for b in sample_batches(model, split, count=64, batch=16)]
        return activation_scores(module, batches)
    return None


def _taylor_scores(model, module, ctx: PassContext) -> dict:
    """|gradient x weight| per parameter, summed over calibration batches (first-order Taylor importance)."""
    import torch

    from infertune.passes.onnx_utils import sample_batches

    split = ctx.require("calibration", "taylor importance needs calibration data: pass --data, or use "
                                       "importance=l1")
    scores = {name: torch.zeros_like(p) for name, p in module.named_parameters()}
    module.train(False)
    for batch in sample_batches(model, split, count=64, batch=16):
        out = module(*[torch.from_numpy(batch[n]) for n in model.signature.input_names])
        # for class scores the loss is the log-likelihood of the model's own prediction; for embeddings the
        # projection on its own (detached) direction: both have non-zero gradients at the trained weights
        if model.task == "classification":
            loss = torch.nn.functional.cross_entropy(out, out.argmax(dim=-1))
        else:
            loss = -(out * out.detach()).sum()
        module.zero_grad()
        loss.backward()
        for name, p in module.named_parameters():
            if p.grad is not None:
                scores[name] += (p.grad * p).detach().abs()
    module.zero_grad()
    return {id(p): scores[name] for name, p in module.named_parameters()}

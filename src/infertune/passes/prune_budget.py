"""Pruning to the budget: remove structured units a step at a time (FFN neurons and attention heads in a
transformer, channels and hidden neurons in a CNN or MLP), fine-tune briefly, measure the drop on the validation
split, and stop at the largest sparsity whose drop stays within the budget, as NNCF's and ModelOpt's
accuracy-aware pruning do. Each step prunes the model the previous step accepted (importance is measured
again on the fine-tuned weights); the first step over budget, the largest sparsity allowed or the time budget
ends the schedule, and the last accepted model is the result.

The validation split is the calibration split (passes never see held-out): the drop is top-1 accuracy with
labels, else top-1 agreement (class scores) or 1 - mean cosine (embeddings) against the unpruned model.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from infertune.errors import PassError
from infertune.passes.registry import Checked, param, PassContext, PassOutput, SearchFacts, register
from infertune.passes.structure import bert_layers, channel_chains, prune_bert_layer, prune_chains

TOLERANCE = 1e-9  # two samples of 200 are a drop of 0.01, not of 0.010000000000000009


@dataclass(frozen=True)
class PruneToBudget(Checked):
    max_drop: float = param(0.01, "largest validation drop accepted (0.01 = one point of top-1, or cosine 0.99); "
                                  "the search sets half the user's budget", low=0.0, high=1.0)
    step: float = param(0.1, "sparsity added per step (linear), or fraction of what is left removed per step "
                             "(exponential)", low=0.0, high=1.0, open_low=True, open_high=True)
    schedule: str = param("linear", "linear: 0.1, 0.2, 0.3...; exponential: 0.1, 0.19, 0.27... (finer as it "
                                    "gets harder)", choices=("linear", "exponential"))
    max_sparsity: float = param(0.9, "largest fraction of units removed", low=0.0, high=1.0, open_low=True,
                                open_high=True)
    importance: str = param("l1", "l1 or l2 weight norm, taylor (|gradient x weight|) or activation (mean "
                                  "|output| of the unit) on calibration data",
                            choices=("l1", "l2", "taylor", "activation"))
    heads: bool = param(True, "transformers: prune attention heads too (else FFN neurons only)")
    fine_tune_epochs: int = param(1, "epochs on the train split after each step (labels, and the unpruned "
                                     "model's outputs); 0 measures the bare cut", low=0)
    lr: float = param(1e-4, "fine-tuning learning rate", low=0.0, open_low=True)
    seconds: float = param(600.0, "training seconds, at most, over the whole schedule", low=0.0, open_low=True)
    validation_samples: int = param(256, "validation samples measured after each step", low=1)


def targets(config: PruneToBudget) -> list[float]:
    """The sparsities the schedule tries, increasing, up to max_sparsity (which is always the last)."""
    found: list[float] = []
    k = 1
    while True:
        value = k * config.step if config.schedule == "linear" else 1 - (1 - config.step) ** k
        if value >= config.max_sparsity - 1e-9:
            return found + [config.max_sparsity]
        found.append(round(value, 6))
        k += 1


def prune_candidates(facts: SearchFacts) -> tuple[PruneToBudget, ...]:
    """Half the user's budget on the validation split, so the held-out verdict has room; the search's share of
    the time budget to train in."""
    return (PruneToBudget(max_drop=facts.max_drop / 2, seconds=facts.training_seconds),)


@register("prune-to-budget", PruneToBudget, formats=("torch",), stage="structure", needs=("training", "torch-layers"),
          to_budget=True, candidates=prune_candidates,
          summary="structured pruning a step at a time, fine-tuned, up to the largest sparsity within the budget")
def prune_to_budget(model, config: PruneToBudget, ctx: PassContext) -> PassOutput:
    from infertune.passes.training import train

    validation = ctx.require("calibration", "prune-to-budget measures each step on the calibration split: pass "
                                            "--data, or use prune-structured with a fixed amount")
    train_split = ctx.split("train")
    if config.fine_tune_epochs > 0 and train_split is None:
        raise PassError("prune-to-budget fine-tuning needs training data: pass --data, or set fine_tune_epochs=0")
    teacher = model.module
    if not bert_layers(teacher) and not channel_chains(teacher):
        raise PassError(f"prune-to-budget found no conv/linear chain or BERT layer in '{model.name}'")
    probe = _Probe(model, validation, config.validation_samples)
    accepted, sparsity, drop = model, 0.0, 0.0
    rows: list[dict] = []
    stopped, spent = "max_sparsity", 0.0
    for target in targets(config):
        if spent >= config.seconds:
            stopped = "time"
            break
        module = copy.deepcopy(accepted.module)
        relative = 1 - (1 - target) / (1 - sparsity)
        _cut(module, relative, config, accepted, ctx)
        candidate = dataclasses.replace(model, module=module, meta=_meta(model, module))
        started = time.monotonic()
        if config.fine_tune_epochs > 0:
            train(candidate, train_split, epochs=config.fine_tune_epochs, lr=config.lr, teacher=teacher,
                  max_seconds=config.seconds - spent)
        spent += time.monotonic() - started
        step_drop = probe.drop(module)
        rows.append({"sparsity": target, "drop": step_drop, "parameters": _count(module),
                     "within_budget": step_drop <= config.max_drop + TOLERANCE})
        ctx.say(f"sparsity {target:.0%}: validation drop {step_drop:.4f} (budget {config.max_drop})")
        if step_drop > config.max_drop + TOLERANCE:
            stopped = "budget"
            break
        accepted, sparsity, drop = candidate, target, step_drop
    before, after = _count(teacher), _count(accepted.module)
    if sparsity == 0.0:
        note = (f"no step stayed within the validation budget {config.max_drop} (first step, "
                f"{rows[0]['sparsity']:.0%}, dropped {rows[0]['drop']:.4f}): the model is returned unpruned")
    else:
        note = (f"pruned to {sparsity:.0%} of structured units (validation drop {drop:.4f} <= {config.max_drop}); "
                + {"budget": f"the next step, {rows[-1]['sparsity']:.0%}, dropped {rows[-1]['drop']:.4f}",
                   "max_sparsity": "the largest sparsity allowed was reached",
                   "time": f"the {config.seconds:.0f} s training budget ran out"}[stopped])
    return PassOutput(accepted, notes=[note, f"parameters {before} -> {after} ({after / before:.0%}); "
                                             f"{len(rows)} steps, {spent:.0f} s of fine-tuning"],
                      details={"sparsity": sparsity, "drop": drop, "stopped_by": stopped, "schedule": rows,
                               "parameters_before": before, "parameters_after": after, "train_seconds": spent})


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _meta(model, module) -> dict:
    layers = bert_layers(module)
    heads = {layer.attention.self.num_attention_heads for layer in layers}
    return {**model.meta, "num_heads": heads.pop()} if len(heads) == 1 and "num_heads" in model.meta else model.meta


def _cut(module, amount: float, config: PruneToBudget, source, ctx: PassContext) -> None:
    """Remove `amount` of the remaining units of each prunable layer of `module` (a copy of `source.module`)."""
    if amount <= 0:
        return
    from infertune.passes.prune import importance_scores

    scores = importance_scores(source, module, config.importance, ctx)
    layers = bert_layers(module)
    if layers:
        for layer in layers:
            prune_bert_layer(layer, amount, heads=config.heads, norm=config.importance, scores=scores)
    else:
        prune_chains(channel_chains(module), amount, norm=config.importance, scores=scores)


class _Probe:
    """The validation drop of a module against the unpruned model, on fixed validation batches."""

    def __init__(self, model, split, samples: int):
        from infertune.passes.onnx_utils import sample_batches

        self.model = model
        self.batches = sample_batches(model, split, count=samples, batch=32)
        self.labels = split.labels[:sum(len(next(iter(b.values()))) for b in self.batches)] \
            if split.labels is not None and model.task == "classification" else None
        self.reference = self._outputs(model.module)
        self.base = self._quality(self.reference)

    def _outputs(self, module) -> np.ndarray:
        import torch

        module.eval()
        with torch.no_grad():
            outs = [module(*[torch.from_numpy(b[n]) for n in self.model.signature.input_names]) for b in self.batches]
        return np.concatenate([o.reshape(len(o), -1).numpy() for o in outs])

    def _quality(self, outputs: np.ndarray) -> float:
        from infertune.data.metrics import row_cosines, top1_accuracy, top1_agreement

        if self.labels is not None:
            return top1_accuracy(outputs, self.labels)
        if self.model.task == "classification":
            return top1_agreement(self.reference, outputs)
        return float(np.mean(row_cosines(self.reference, outputs)))

    def drop(self, module) -> float:
        return self.base - self._quality(self._outputs(module))

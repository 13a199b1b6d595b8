"""Knowledge distillation: a smaller student learns from the teacher. Class scores: soft targets at a
temperature plus hard labels; embeddings: cosine + MSE to the teacher's embeddings. Students: a thinner
copy of a CNN/MLP (whole channels removed), or a transformer keeping evenly spaced layers, initialised
from the teacher's own weights."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from infertune.errors import ConfigError, PassError
from infertune.passes.registry import Checked, param, PassContext, PassOutput, SearchFacts, register
from infertune.passes.structure import bert_layers, channel_chains, prune_chains


@dataclass(frozen=True)
class Distill(Checked):
    width: float = param(0.5, "CNN/MLP student: fraction of each hidden layer's channels kept", search=(0.5, 0.25),
                         low=0.0, high=1.0, open_low=True)
    layers: int = param(3, "transformer student: encoder layers kept (evenly spaced, teacher-initialised)", low=1)
    epochs: int = param(30, "epochs over the train split", low=1)
    lr: float = param(1e-3, "learning rate (AdamW)")
    temperature: float = param(4.0, "softmax temperature of the soft targets (class scores)")
    alpha: float = param(0.7, "weight of the soft targets against the hard labels (class scores)", low=0.0,
                         high=1.0)
    reinit: bool = param(False, "CNN/MLP student: start from random weights instead of the teacher's")
    corpus: int = param(0, "text models: this many more unlabeled sentences, from the docstrings of installed "
                           "packages (none of them held out), distilled on the teacher's outputs", low=0)


def _transformer_student(module, layers: int):
    student = copy.deepcopy(module)
    encoder_layers = bert_layers(student)
    total = len(encoder_layers)
    if not 1 <= layers < total:
        raise ConfigError(f"distill layers must be between 1 and {total - 1} for a {total}-layer model, got {layers}")
    keep = sorted({round(i * (total - 1) / max(layers - 1, 1)) for i in range(layers)}) if layers > 1 else [0]
    container = next(m for m in student.modules() if hasattr(m, "layer") and len(getattr(m, "layer", [])) == total)
    import torch

    container.layer = torch.nn.ModuleList([container.layer[i] for i in keep])
    config = getattr(next((m for m in student.modules() if hasattr(m, "config")), None), "config", None)
    if config is not None:
        config.num_hidden_layers = len(keep)
    return student, f"kept encoder layers {keep} of {total}"


def _thin_student(module, width: float, reinit: bool):
    if not 0 < width < 1:
        raise ConfigError(f"distill width must be between 0 and 1, got {width}")
    student = copy.deepcopy(module)
    chains = channel_chains(student)
    if not chains:
        raise PassError("distill found no conv/linear chain to thin and no transformer layers")
    prune_chains(chains, 1 - width)
    if reinit:
        import torch

        torch.manual_seed(0)
        for m in student.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return student, f"thinned {len(chains)} layers to {width:.0%} of their width"


def distill_candidates(facts: SearchFacts) -> tuple[Distill, ...]:
    """The search distils CNNs and MLPs, to a quarter of the width; a transformer student (fewer layers) is left
    to a recipe."""
    return () if facts.transformer else (Distill(width=0.25),)


@register("distill", Distill, formats=("torch",), stage="structure", needs=("training", "torch-layers"),
          candidates=distill_candidates, summary="train a smaller student from the model as teacher")
def distill(model, config: Distill, ctx: PassContext) -> PassOutput:
    split = ctx.require("train", "distill needs training data: pass --data (the train split is used)")
    teacher = model.module
    if bert_layers(teacher):
        student, shape = _transformer_student(teacher, config.layers)
    else:
        student, shape = _thin_student(teacher, config.width, config.reinit)
    before = sum(p.numel() for p in teacher.parameters())
    after = sum(p.numel() for p in student.parameters())
    result = dataclasses.replace(model, module=student)
    from infertune.passes.training import train

    split, source = _with_corpus(model, split, config.corpus, ctx)
    ctx.say(f"distilling {config.epochs} epochs on {len(split)} samples")
    stats = train(result, split, epochs=config.epochs, lr=config.lr, teacher=teacher, temperature=config.temperature,
                  alpha=config.alpha, say=ctx.say, checkpoint=_checkpoint(ctx, config))
    return PassOutput(result, notes=[f"{shape}; parameters {before} -> {after} ({after / before:.0%}); distilled "
                                     f"{config.epochs} epochs on {source} in {stats.seconds:.0f} s"],
                      details={"parameters_before": before, "parameters_after": after,
                               "train_seconds": stats.seconds, "train_samples": len(split)})


def _checkpoint(ctx: PassContext, config: Distill):
    """Where a run saves its epochs, named by its config, so a resumed search continues only the same training."""
    import hashlib

    return ctx.workdir / f"checkpoint-{hashlib.sha1(repr(config).encode()).hexdigest()[:12]}.pt"


def _with_corpus(model, split, count: int, ctx: PassContext):
    """The train split, with `count` corpus sentences added for a text model (as unlabeled samples: the
    teacher's outputs are their targets, so a labeled split keeps its labels only when no corpus is added)."""
    if count == 0:
        return split, f"the train split ({len(split)} samples)"
    if not model.is_text or split.texts is None:
        raise ConfigError(f"distill corpus={count} adds sentences, which only a text model takes: '{model.name}' "
                          "takes arrays; set corpus=0")
    from infertune.data.corpus import build_corpus
    from infertune.data.dataset import Split

    ctx.say("building the text corpus from installed packages' docstrings")
    # the heldout filter is the pass context's, so the corpus never holds a sentence the verdict is measured on
    extra = ctx.without_heldout(build_corpus(exclude=split.texts, limit=count))
    return (Split(name="train+corpus", texts=split.texts + extra),
            f"the train split ({len(split)} sentences) and {len(extra)} corpus sentences")

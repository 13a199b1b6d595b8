"""Short training loops the passes share: fine-tuning on labels, or distilling from a teacher's outputs.

Only the train split is used (never calibration's held-back role, never held-out). CPU, deterministic seed.
A loop stops at its epochs, or earlier at a step or time budget; with a checkpoint file it saves its state
after each epoch and a later call with the same file resumes from there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from infertune.errors import PassError


@dataclass(frozen=True)
class TrainStats:
    """What a training loop did: steps and epochs run, seconds spent, the last epoch's mean loss, and why it
    stopped ("epochs", "steps" or "time")."""

    steps: int
    epochs: float
    seconds: float
    loss: float
    stopped_by: str


def _batches(model, split, batch: int, rng: np.random.Generator):
    order = rng.permutation(len(split))
    for start in range(0, len(order), batch):
        index = order[start:start + batch]
        yield model.inputs_for(split, index), (None if split.labels is None else split.labels[index])


def loss_for(out, target, labels, *, classification: bool, alpha: float, temperature: float):
    """Cross-entropy on labels plus soft targets (class scores), or 1 - cosine + MSE to the target embeddings."""
    import torch
    import torch.nn.functional as F

    loss = out.new_zeros(())
    if classification:
        if labels is not None:
            loss = loss + (1 - alpha if target is not None else 1.0) * F.cross_entropy(out, torch.from_numpy(labels))
        if target is not None:
            soft = F.kl_div(F.log_softmax(out / temperature, -1), F.softmax(target / temperature, -1),
                            reduction="batchmean") * temperature ** 2
            loss = loss + (alpha if labels is not None else 1.0) * soft
    elif target is not None:
        loss = loss + (1 - F.cosine_similarity(out, target, dim=-1)).mean() + F.mse_loss(out, target)
    return loss


def train(student_model, split, *, epochs: int, lr: float, batch: int = 32, teacher=None, temperature: float = 4.0,
          alpha: float = 0.5, say: Callable[[str], None] | None = None, seed: int = 0, max_steps: int | None = None,
          max_seconds: float | None = None, checkpoint: Path | None = None, dropout: bool = True) -> TrainStats:
    """Train `student_model.module` in place (it is already a copy): cross-entropy on labels, plus soft
    targets from `teacher` (a torch module) when given; embeddings distil with 1 - cosine + MSE. `dropout=False`
    keeps dropout layers off (a student matching its teacher, rather than learning anew)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module = student_model.module
    names = student_model.signature.input_names
    classification = student_model.task == "classification"
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr)
    first_epoch = _resume(checkpoint, module, optimizer, rng, say)
    module.train()
    if not dropout:
        for layer in module.modules():
            if isinstance(layer, torch.nn.Dropout):
                layer.eval()
    started, steps, last, stopped, done = time.monotonic(), 0, float("nan"), "epochs", 0.0
    for epoch in range(first_epoch, epochs):
        total, count, seen = 0.0, 0, 0
        for inputs, labels in _batches(student_model, split, batch, rng):
            if max_steps is not None and steps >= max_steps:
                stopped = "steps"
                break
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                stopped = "time"
                break
            tensors = [torch.from_numpy(inputs[n]) for n in names]
            out = module(*tensors)
            target = None
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(*tensors)
            loss = loss_for(out, target, labels, classification=classification, alpha=alpha, temperature=temperature)
            if not loss.requires_grad:
                raise PassError("nothing to train on: no labels and no teacher")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            seen += len(tensors[0])
            total += float(loss.detach()) * len(tensors[0])
            count += len(tensors[0])
        if count:  # an epoch the budget stopped before its first batch reports nothing
            last = total / count
            done += seen / max(len(split), 1)
            if say:
                say(f"epoch {epoch + 1}/{epochs}: loss {last:.4f}" + (f" (stopped by the {stopped} budget)"
                                                                     if stopped != "epochs" else ""))
        if stopped != "epochs":
            break
        if checkpoint is not None:
            _save(checkpoint, module, optimizer, rng, epoch + 1)
    module.eval()
    return TrainStats(steps=steps, epochs=done, seconds=time.monotonic() - started, loss=last, stopped_by=stopped)


def _save(path: Path, module, optimizer, rng: np.random.Generator, epoch: int) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    torch.save({"module": module.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "rng": {k: str(v) for k, v in rng.bit_generator.state["state"].items()}}, staging)
    staging.replace(path)


def _resume(path: Path | None, module, optimizer, rng: np.random.Generator, say) -> int:
    """The epoch to start from: after the last one a checkpoint holds (weights_only: never unpickle code)."""
    if path is None or not path.is_file():
        return 0
    import torch

    state = torch.load(path, weights_only=True)
    module.load_state_dict(state["module"])
    optimizer.load_state_dict(state["optimizer"])
    generator = rng.bit_generator.state
    rng.bit_generator.state = {**generator, "state": {k: int(v) for k, v in state["rng"].items()}}
    if say:
        say(f"resumed from {path} after epoch {state['epoch']}")
    return int(state["epoch"])

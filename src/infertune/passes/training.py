"""Short training loops the passes share: fine-tuning on labels, or distilling from a teacher's outputs.

Only the train split is used (never calibration's held-back role, never held-out). CPU, deterministic seed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from infertune.errors import PassError


def _batches(model, split, batch: int, rng: np.random.Generator):
    order = rng.permutation(len(split))
    for start in range(0, len(order), batch):
        index = order[start:start + batch]
        yield model.inputs_for(split, index), (None if split.labels is None else split.labels[index])


def train(student_model, split, *, epochs: int, lr: float, batch: int = 32, teacher=None, temperature: float = 4.0,
          alpha: float = 0.5, say: Callable[[str], None] | None = None, seed: int = 0) -> None:
    """Train `student_model.module` in place (it is already a copy): cross-entropy on labels, plus soft
    targets from `teacher` (a torch module) when given; embeddings distil with 1 - cosine."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module = student_model.module
    names = student_model.signature.input_names
    classification = student_model.task == "classification"
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr)
    module.train()
    for epoch in range(epochs):
        total, count = 0.0, 0
        for inputs, labels in _batches(student_model, split, batch, rng):
            tensors = [torch.from_numpy(inputs[n]) for n in names]
            out = module(*tensors)
            loss = out.new_zeros(())
            target = None
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(*tensors)
            if classification:
                if labels is not None:
                    loss = loss + (1 - alpha if teacher is not None else 1.0) * F.cross_entropy(
                        out, torch.from_numpy(labels))
                if target is not None:
                    soft = F.kl_div(F.log_softmax(out / temperature, -1), F.softmax(target / temperature, -1),
                                    reduction="batchmean") * temperature ** 2
                    loss = loss + (alpha if labels is not None else 1.0) * soft
            elif target is not None:
                loss = loss + (1 - F.cosine_similarity(out, target, dim=-1)).mean() + F.mse_loss(out, target)
            if not loss.requires_grad:
                raise PassError("nothing to train on: no labels and no teacher")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(tensors[0])
            count += len(tensors[0])
        if say:
            say(f"epoch {epoch + 1}/{epochs}: loss {total / max(count, 1):.4f}")
    module.eval()

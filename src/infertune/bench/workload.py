"""The inputs a benchmark times: many different real samples per batch size, never one repeated input."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Workload:
    description: str
    batches: dict[int, list[dict[str, np.ndarray]]]   # batch size -> distinct batches, cycled when timing
    grouped: dict[int, list[dict[str, np.ndarray]]] = field(default_factory=dict)  # texts: similar lengths together

    def only_grouped(self) -> "Workload":
        return Workload(self.description + ", similar lengths batched together", self.grouped)


def length_order(split) -> np.ndarray | None:
    """The split's indices, shortest text first (ties in split order): how sentence-transformers' `encode` and
    `infertune predict` batch texts, so a batch's padding stays small. None for a split without texts."""
    if split is None or split.texts is None:
        return None
    return np.argsort(np.array([len(t) for t in split.texts]), kind="stable")


def grouped_batches(model, split, batch: int, *, max_batches: int = 64) -> list[dict[str, np.ndarray]]:
    """Batches of texts of similar length: consecutive runs of `batch` in length order, taken in a fixed shuffled
    order (so timing cycles through short and long ones alike). Empty for non-text splits and batch 1."""
    order = length_order(split)
    if order is None or batch < 2 or len(order) < batch:
        return []
    runs = [order[i:i + batch] for i in range(0, len(order) - batch + 1, batch)]
    picked = np.random.default_rng(0).permutation(len(runs))[:max_batches]
    return [model.inputs_for(split, runs[i]) for i in picked]


def _indices(n: int, batch: int, i: int) -> np.ndarray:
    """Batch i: the next `batch` samples of a stream that walks the split in a fresh fixed shuffle on every
    pass (shuffle k seeded with k), so batches differ even when they wrap around the split."""
    positions = np.arange(i * batch, (i + 1) * batch)
    return np.array([_shuffle(n, int(p // n))[p % n] for p in positions])


@lru_cache(maxsize=64)
def _shuffle(n: int, k: int) -> np.ndarray:
    return np.random.default_rng(k).permutation(n)


def build_workload(model, split=None, batch_sizes=(1, 32), *, max_batches: int = 64,
                   data_name: str | None = None) -> Workload:
    """Consecutive chunks of `split` (text at natural length, padded to each batch's longest), or random
    inputs from the signature when there is no data; for texts, also batches of similar lengths (`grouped`)."""
    batches: dict[int, list[dict[str, np.ndarray]]] = {}
    grouped = {batch: found for batch in batch_sizes
               if (found := grouped_batches(model, split, batch, max_batches=max_batches))}
    for batch in batch_sizes:
        if split is None:
            batches[batch] = [model.example_inputs(batch_size=batch, seed=i) for i in range(min(max_batches, 8))]
            continue
        # shuffled, so batches do not follow the split's own order (docstrings are sorted), and up to
        # max_batches different batches, at most 8 passes over the split
        count = min(max_batches, max(1, (len(split) * 8) // batch))
        batches[batch] = [model.inputs_for(split, _indices(len(split), batch, i)) for i in range(count)]
    if split is None:
        description = "random inputs from the model's signature (no data given)"
    else:
        kind = "natural-length sentences, padded per batch" if split.texts is not None else "samples"
        description = f"{data_name or 'data'} {split.name} split: {len(split)} {kind}"
    return Workload(description=description, batches=batches, grouped=grouped)

"""The inputs a benchmark times: many different real samples per batch size, never one repeated input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Workload:
    description: str
    batches: dict[int, list[dict[str, np.ndarray]]]   # batch size -> distinct batches, cycled when timing


def _indices(n: int, batch: int, i: int) -> np.ndarray:
    return np.arange(i * batch, (i + 1) * batch) % n


def build_workload(model, split=None, batch_sizes=(1, 32), *, max_batches: int = 64,
                   data_name: str | None = None) -> Workload:
    """Consecutive chunks of `split` (text at natural length, padded to each batch's longest), or random
    inputs from the signature when there is no data."""
    batches: dict[int, list[dict[str, np.ndarray]]] = {}
    for batch in batch_sizes:
        if split is None:
            batches[batch] = [model.example_inputs(batch_size=batch, seed=i) for i in range(min(max_batches, 8))]
            continue
        count = max(1, min(max_batches, len(split) // batch))
        batches[batch] = [model.inputs_for(split, _indices(len(split), batch, i)) for i in range(count)]
    if split is None:
        description = "random inputs from the model's signature (no data given)"
    else:
        kind = "natural-length sentences, padded per batch" if split.texts is not None else "samples"
        description = f"{data_name or 'data'} {split.name} split: {len(split)} {kind}"
    return Workload(description=description, batches=batches)

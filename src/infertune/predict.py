"""Run a model over a data set and save its outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np


def predict(model: str, *, data: str, out: str | Path, backend: str | None = None, weights: str | None = None,
            split: str | None = None, batch_size: int = 32,
            progress: Callable[[int, int], None] | None = None) -> int:
    """Outputs of `model` on every sample of a split of `data`, written to `out` (.npz). Returns the count."""
    from infertune.bench.job import any_arrays
    from infertune.data import load_dataset, save_npz
    from infertune.engine import load
    from infertune.model import ZOO

    dataset = load_dataset(data)
    arrays = any_arrays(dataset)
    engine = load(model, backend=backend, weights=weights, data=arrays if model not in ZOO else None)
    if not engine.model.is_text and dataset.kind == "arrays":
        dataset = load_dataset(data, input_specs=engine.model.input_specs)
    chosen = dataset.split(split or ("all" if "all" in dataset.splits else "heldout"))
    parts: dict[str, list[np.ndarray]] = {}
    total = len(chosen)
    for start in range(0, total, batch_size):
        inputs = engine.model.inputs_for(chosen, np.arange(start, min(start + batch_size, total)))
        for name, value in engine.run(inputs).items():
            parts.setdefault(name, []).append(value)
        if progress:
            progress(min(start + batch_size, total), total)
    save_npz(out, {name: np.concatenate(values) for name, values in parts.items()})
    return total

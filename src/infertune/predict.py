"""Run a model over a data set and save its outputs, in input order."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np


def predict(model, *, data, out: str | Path, backend: str | None = None, weights: str | None = None,
            task: str | None = None, text_field: str = "text", split: str | None = None, batch_size: int = 32,
            progress: Callable[[int, int], None] | None = None) -> int:
    """Outputs of `model` on every sample of a split of `data` (by default all of a file, in its order; the
    held-out split of a zoo data set), written to `out` (.npz, .jsonl or .parquet). Returns the sample count.

    Example: `infertune.predict("runs/x", data="new.jsonl", out="scores.jsonl")`.
    """
    from infertune.bench.job import pad_to_common
    from infertune.bench.workload import length_order
    from infertune.data.outputs import check_output_path, save_outputs
    from infertune.engine import load
    from infertune.resolver import resolve

    check_output_path(out)
    resolved, dataset = resolve(model, data=data, weights=weights, task=task, text_field=text_field)
    engine = load(resolved, backend=backend)
    chosen = dataset.split(split or ("all" if "all" in dataset.splits else "heldout"))
    parts: dict[str, list[np.ndarray]] = {}
    total = len(chosen)
    order = length_order(chosen)  # texts: similar lengths in a batch, so padding stays small
    order = np.arange(total) if order is None else order
    for start in range(0, total, batch_size):
        inputs = engine.model.inputs_for(chosen, order[start:start + batch_size])
        for name, value in engine.run(inputs).items():
            parts.setdefault(name, []).append(value)
        if progress:
            progress(min(start + batch_size, total), total)
    back = np.argsort(order)  # outputs in input order
    outputs = {name: np.concatenate(pad_to_common(values))[back] for name, values in parts.items()}
    save_outputs(out, outputs, texts=chosen.texts,
                 label_names=engine.model.labels if engine.model.task == "classification" else None)
    return total

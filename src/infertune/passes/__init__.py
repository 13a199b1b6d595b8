"""Techniques applied to a model, each a frozen dataclass config plus the function registered for it.

    from infertune.passes import apply_passes
    from infertune.passes.export import ExportOnnx
    from infertune.passes.fuse import OrtFusion
    from infertune.passes.quantize.onnx_backend import Int8Dynamic
    model, outputs = apply_passes("minilm", [ExportOnnx(), OrtFusion(), Int8Dynamic()], data="docstrings")
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def apply_passes(model, passes: list[Any], *, data=None, workdir: str | Path | None = None,
                 progress=None):
    """Apply passes in order; returns the final model and each pass's output (notes, details).

    `model`: a Model or a spec; `data`: a zoo data set name, an .npz path or a Dataset (passes use its
    train and calibration splits, never held-out); `workdir`: where artifacts go (a new temporary folder
    when omitted, kept so the returned model's files stay valid).
    """
    from infertune.data import Dataset, load_dataset
    from infertune.model import load_model
    from infertune.passes.registry import PassContext, apply

    dataset = data if isinstance(data, Dataset) or data is None else load_dataset(data)
    if isinstance(model, str):
        from infertune.bench.job import any_arrays

        model = load_model(model, data=any_arrays(dataset) if dataset is not None else None)
    if dataset is None and model.default_data is not None:
        dataset = load_dataset(model.default_data)
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="infertune-passes-"))
    outputs = []
    for index, config in enumerate(passes):
        ctx = PassContext(workdir=root / f"{index:02d}-{type(config).__name__}", dataset=dataset, progress=progress)
        output = apply(model, config, ctx)
        outputs.append(output)
        model = output.model
    return model, outputs

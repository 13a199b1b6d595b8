"""Techniques applied to a model, each a frozen dataclass config plus the function registered for it.

    import infertune
    from infertune.passes.export import ExportOnnx
    from infertune.passes.fuse import OrtFusion
    from infertune.passes.quantize.onnx_backend import Int8Dynamic
    model, outputs = infertune.apply_passes("minilm", [ExportOnnx(), OrtFusion(), Int8Dynamic()], data="docstrings")
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def apply_passes(model, passes: list[Any], *, data=None, workdir: str | Path | None = None, progress=None):
    """Apply passes in order; returns the final model and each pass's output (notes, details).

    `model`: a Model; `data`: a Dataset or None (passes use its train and calibration splits, never held-out);
    `workdir`: where artifacts go (a new temporary folder when omitted, kept so the returned model's files stay
    valid). `infertune.apply_passes` resolves specs, then calls this.
    """
    from infertune.passes.registry import PassContext, apply

    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="infertune-passes-"))
    outputs = []
    for index, config in enumerate(passes):
        ctx = PassContext(workdir=root / f"{index:02d}-{type(config).__name__}", dataset=data, progress=progress)
        output = apply(model, config, ctx)
        outputs.append(output)
        model = output.model
    return model, outputs

"""What the ONNX passes share: where outputs go, calibration batches, and numeric checks between graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infertune.errors import UnsupportedModelError
from infertune.model.onnx_file import with_artifact


def as_onnx(model, path: Path):
    """The same model (name, task, tokenizer) backed by another ONNX file, with that file's own input and
    output dtypes."""
    return with_artifact(model, path)


def sample_batches(model, split, *, count: int = 64, batch: int = 8) -> list[dict[str, np.ndarray]]:
    """Up to `count` samples of a split in batches (text at natural length); random inputs without data."""
    if split is None:
        return [model.example_inputs(batch_size=batch, seed=i) for i in range(max(1, count // batch))]
    count = min(count, len(split))
    return [model.inputs_for(split, np.arange(start, min(start + batch, count))) for start in range(0, count, batch)]


def run_onnx(path: Path, batches: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """The first output of an ONNX model on each batch (ONNX Runtime, CPU, default optimisations)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return [session.run(None, {k: v for k, v in b.items() if k in names})[0].astype(np.float64) for b in batches]


def cosine_rows(reference: list[np.ndarray], candidate: list[np.ndarray]) -> np.ndarray:
    """Row cosines over a list of batches (batches may differ in their padded lengths)."""
    from infertune.data.metrics import row_cosines

    return np.concatenate([row_cosines(r.reshape(len(r), -1), c.reshape(len(c), -1))
                           for r, c in zip(reference, candidate)])


def save_onnx(proto, target: Path) -> None:
    """Write an ONNX ModelProto to `target` through a staged file renamed into place; past protobuf's 2 GB limit
    the weights go beside it (`<name>.data`)."""
    import onnx

    large = proto.ByteSize() > 1_800_000_000
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(target.name + ".partial")
    onnx.save(proto, str(staged), save_as_external_data=large, location=target.name + ".data")
    staged.replace(target)


def require_onnx(model, pass_name: str) -> Path:
    if model.onnx_path is None:
        raise UnsupportedModelError(f"pass '{pass_name}' needs an ONNX model: add the export pass before it")
    return Path(model.onnx_path)

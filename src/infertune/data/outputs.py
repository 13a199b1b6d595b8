"""A model's outputs written to a file, by its extension: `.npz` (one array per output), `.jsonl` (one line per
sample, in input order), `.parquet` (one row per sample). Written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from infertune.errors import ConfigError

OUTPUT_SUFFIXES = (".npz", ".jsonl", ".parquet")


def check_output_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--out '{path}' must end in .npz, .jsonl or .parquet (the format follows the extension)")
    if path.suffix.lower() == ".parquet":
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:  # checked before the model runs, not after
            raise ConfigError(f"--out '{path}' is Parquet, which needs pyarrow: pip install 'infertune[ray]' (or "
                              f"pyarrow), or write .jsonl / .npz")
    return path


def save_outputs(path: str | Path, outputs: Mapping[str, np.ndarray], *, texts: Sequence[str] | None = None,
                 label_names: Sequence[str] | None = None) -> Path:
    """Write `outputs` (name -> array, first axis = samples, in input order). `.jsonl` and `.parquet` also carry
    each sample's index and text, and, with `label_names`, the predicted label of class scores.

    Example: `save_outputs("out.jsonl", {"logits": logits}, texts=texts, label_names=("negative", "positive"))`.
    """
    from infertune.data.npz import save_npz
    from infertune.io import atomic_open

    path = check_output_path(path)
    if path.suffix.lower() == ".npz":
        return save_npz(path, outputs)
    rows = _rows(outputs, texts, label_names)
    with atomic_open(path) as handle:
        if path.suffix.lower() == ".jsonl":
            for row in rows:
                handle.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), handle)
    return path


def _rows(outputs: Mapping[str, np.ndarray], texts, label_names) -> list[dict]:
    count = len(next(iter(outputs.values()))) if outputs else 0
    rows: list[dict] = [{"index": i} for i in range(count)]
    if texts is not None:
        for row, text in zip(rows, texts):
            row["text"] = text
    first = next(iter(outputs.values()), None)
    if label_names is not None and first is not None and first.ndim == 2 and first.shape[1] == len(label_names):
        for row, index in zip(rows, first.argmax(axis=1).tolist()):
            row["label"] = label_names[index]
    for name, values in outputs.items():
        for row, value in zip(rows, values.tolist()):
            row[name] = value
    return rows

"""User data in `.npz` files: load with checks against the model's inputs, save atomically."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from infertune.data.dataset import Dataset, Split, file_splits
from infertune.errors import DataError

LABELS = "labels"


def load_npz(
    path: str | os.PathLike[str], *, input_specs: Mapping[str, tuple[str, tuple]] | None = None
) -> Dataset:
    """Load an `.npz` of input arrays (first axis = samples) and optional int `labels` as a Dataset.

    Splits: "all" (every sample, in file order) and the disjoint "train", "calibration", "heldout".
    With `input_specs`, only the named inputs are kept and each is checked for name, dtype and shape.
    Example: `load_npz("val.npz", input_specs={"pixels": ("float32", ("batch", 1, 8, 8))})`.
    """
    return Dataset(name=str(path), splits=file_splits(load_npz_split(path, input_specs=input_specs)), kind="arrays")


def load_npz_split(path: str | os.PathLike[str], *, input_specs: Mapping[str, tuple[str, tuple]] | None = None,
                   name: str = "all") -> Split:
    """Every sample of an `.npz` file, checked, as one split in file order."""
    path = Path(path)
    _check_archive(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"data file '{path}' holds a single array, not an .npz archive: save with np.savez")
        with loaded as archive:
            arrays = {key: archive[key] for key in archive.files}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(
            f"cannot read data file '{path}' as .npz ({e}): save plain numeric arrays with np.savez "
            "(object arrays are refused because loading them would unpickle)"
        ) from e
    labels = arrays.pop(LABELS, None)
    if input_specs is not None:
        inputs = _select_inputs(arrays, input_specs, source=f"data file '{path}'")
    else:
        inputs = arrays
    if not inputs:
        present = ", ".join(sorted(arrays) + ([LABELS] if labels is not None else [])) or "none"
        raise DataError(f"data file '{path}' has no input arrays (arrays present: {present}): "
                        "save one array per model input, named like the input")
    return check_arrays(inputs, labels, input_specs=input_specs, source=f"data file '{path}'", name=name)


def _check_archive(path: Path) -> None:
    """Refuse, before anything is decompressed: a file that is not a zip archive (a text file named .npz), and
    arrays whose headers declare more bytes than the archive holds or than this machine can take (a few KB of
    compressed zeros can declare 10^12 samples)."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as e:
        raise DataError(f"cannot read data file '{path}' ({e.strerror}): check the path") from e
    if magic[:2] != b"PK":
        what = "a single .npy array" if magic[:4] == b"\x93NUM" else "not an .npz (zip) archive"
        text = magic and all(32 <= b < 127 or b in b"\t\r\n" for b in magic)
        raise DataError(f"data file '{path}' is {what}{', but text' if text else ''}: save the model's inputs with "
                        f"np.savez, one array per input{'; text data goes in .txt, .jsonl or .csv' if text else ''}")
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(member, max_header_size=10_000)
                    header = member.tell()
                if dtype.hasobject:
                    continue  # refused with its own message when loaded
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared != info.file_size - header:
                    raise DataError(f"array '{info.filename[:-4]}' in data file '{path}' declares shape {shape} of "
                                    f"{dtype} ({declared} bytes) but holds {info.file_size - header} bytes: the file "
                                    f"is damaged or not written by np.savez")
                total += declared
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"cannot read data file '{path}' as .npz ({e}): save plain numeric arrays with "
                        f"np.savez") from e
    available = _available_memory()
    if total > available // 2:
        raise DataError(f"data file '{path}' holds {total / 1e9:.1f} GB of arrays once decompressed, more than half "
                        f"of this machine's available memory ({available / 1e9:.1f} GB): pass fewer samples")


def _available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def save_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write `arrays` to an uncompressed `.npz` atomically (temp file in the same folder, then rename).

    Example: `save_npz("val.npz", {"pixels": x, "labels": y})`.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise DataError(f"data file '{path}' must end in .npz, so that loading recognizes it")
    prepared: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise DataError(f"array {key!r} has dtype object, which .npz can only store by pickling: "
                            "convert it to a numeric dtype first")
        prepared[key] = arr
    from infertune.io import atomic_open

    with atomic_open(path) as handle:
        np.savez(handle, **prepared)
    return path


def check_splits_against_specs(dataset: Dataset, input_specs: Mapping[str, tuple[str, tuple]]) -> None:
    """Check every split of an array data set against the model's `input_specs` (raises DataError)."""
    for split in dataset.splits.values():
        inputs = _select_inputs(split.inputs or {}, input_specs, source=f"data set {dataset.name!r}")
        check_arrays(inputs, split.labels, input_specs=input_specs, source=f"data set {dataset.name!r}",
                     name=split.name)


def check_arrays(
    inputs: Mapping[str, np.ndarray],
    labels: np.ndarray | None,
    *,
    input_specs: Mapping[str, tuple[str, tuple]] | None,
    source: str,
    name: str,
) -> Split:
    """Validate input arrays and labels and return them as a Split; each failure names the array."""
    for key, arr in inputs.items():
        if arr.ndim == 0:
            raise DataError(f"array {key!r} in {source} is a scalar: the first axis must count samples")
        if input_specs is not None:
            _check_spec(key, arr, input_specs[key], source)
        _check_finite(key, arr, source)
    checked_labels = None if labels is None else _check_labels(labels, source)
    counts = {key: int(arr.shape[0]) for key, arr in inputs.items()}
    if checked_labels is not None:
        counts[LABELS] = int(checked_labels.shape[0])
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{key}={count}" for key, count in counts.items())
        raise DataError(f"arrays in {source} have different sample counts ({listing}): "
                        "every array needs the same first-axis length")
    if not any(counts.values()):
        raise DataError(f"{source} has 0 samples: give at least one sample per array")
    return Split(name=name, inputs=dict(inputs), labels=checked_labels)


def _select_inputs(arrays: Mapping[str, np.ndarray], input_specs: Mapping[str, tuple[str, tuple]],
                   source: str) -> dict[str, np.ndarray]:
    missing = [key for key in input_specs if key not in arrays]
    if missing:
        present = ", ".join(sorted(arrays)) or "none"
        raise DataError(f"{source} lacks the model input {missing[0]!r} (arrays present: {present}): "
                        f"save one array per model input, named {', '.join(input_specs)}")
    return {key: arrays[key] for key in input_specs}


def _check_spec(key: str, arr: np.ndarray, spec: tuple[str, tuple], source: str) -> None:
    dtype_name, shape = spec
    expected = np.dtype(dtype_name)
    if arr.dtype != expected:
        raise DataError(f"input {key!r} in {source} has dtype {arr.dtype}, the model expects {expected}: "
                        f"cast with arr.astype('{expected}')")
    if arr.ndim != len(shape):
        raise DataError(f"input {key!r} in {source} has {arr.ndim} axes {tuple(arr.shape)}, "
                        f"the model expects {len(shape)} axes {tuple(shape)}")
    for axis, (want, got) in enumerate(zip(shape[1:], arr.shape[1:]), start=1):
        if isinstance(want, (int, np.integer)) and not isinstance(want, bool) and int(want) != got:
            raise DataError(f"input {key!r} in {source} has shape {tuple(arr.shape)}, the model expects "
                            f"{tuple(shape)} (first axis = samples): axis {axis} should be {want}, got {got}")


def _check_finite(key: str, arr: np.ndarray, source: str) -> None:
    if not np.issubdtype(arr.dtype, np.inexact):
        return
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise DataError(f"array {key!r} in {source} has {bad} non-finite values (NaN or inf) "
                        f"out of {arr.size}: clean or drop those samples")


def _check_labels(labels: np.ndarray, source: str) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"'labels' in {source} has dtype {labels.dtype}, expected integer class ids: "
                        "cast with labels.astype('int64')")
    if labels.ndim != 1:
        raise DataError(f"'labels' in {source} has shape {tuple(labels.shape)}, expected one class id per "
                        "sample (a 1-D array)")
    if labels.size and labels.min() < 0:
        raise DataError(f"'labels' in {source} has negative values (min {labels.min()}): "
                        "class ids start at 0")
    return labels.astype(np.int64, copy=False)

"""Data sets as named splits of samples, and `load_dataset`, the one way to get one by name or path."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from infertune.errors import ConfigError, DataError

# name -> one line for help texts; the loaders are imported lazily so `infertune.data` stays cheap.
DATASETS: dict[str, str] = {
    "digits": "8x8 handwritten digits from scikit-learn (1,797 images, 10 classes); input 'pixels'",
    "docstrings": "English sentences from Python standard-library docstrings; raw texts, no labels",
}

KINDS = ("text", "arrays")


@dataclass(frozen=True)
class Split:
    """One split of a data set: array samples or raw texts, with optional int64 class labels.

    Exactly one of `inputs` (input name -> array, first axis = samples) and `texts` is set.
    """

    name: str
    inputs: dict[str, np.ndarray] | None = None
    texts: tuple[str, ...] | None = None
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.texts is not None and not isinstance(self.texts, tuple):
            object.__setattr__(self, "texts", tuple(self.texts))  # a list would let callers mutate a split
        if (self.inputs is None) == (self.texts is None):
            raise DataError(
                f"split {self.name!r} needs exactly one of inputs= or texts=, "
                f"got {'both' if self.inputs is not None else 'neither'}"
            )
        if self.inputs is not None and not self.inputs:
            raise DataError(f"split {self.name!r} has an empty inputs dict: give at least one input array")
        counts = self._sample_counts()
        if len(set(counts.values())) > 1:
            raise DataError(f"split {self.name!r} has different sample counts per array: {counts}")

    def _sample_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        if self.texts is not None:
            counts["texts"] = len(self.texts)
        for key, arr in (self.inputs or {}).items():
            counts[key] = int(arr.shape[0]) if arr.ndim else 0
        if self.labels is not None:
            counts["labels"] = int(self.labels.shape[0]) if self.labels.ndim else 0
        return counts

    def __len__(self) -> int:
        if self.texts is not None:
            return len(self.texts)
        return int(next(iter(self.inputs.values())).shape[0])  # type: ignore[union-attr]

    @property
    def kind(self) -> str:
        """'text' for raw sentences, 'arrays' for array inputs."""
        return "text" if self.texts is not None else "arrays"

    def take(self, indices: Iterable[int] | np.ndarray, *, name: str | None = None) -> Split:
        """A subset in the order of `indices`, of the same kind; `name` defaults to this split's name.

        Example: `split.take(range(100))` keeps the first 100 samples.
        """
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices, dtype=np.int64)
        if idx.ndim != 1:
            raise ValueError(f"take() needs a 1-D list of sample indices, got shape {idx.shape}")
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise ValueError(f"take() index out of range for split {self.name!r} of {n} samples")
        return Split(
            name=self.name if name is None else name,
            inputs=None if self.inputs is None else {k: v[idx] for k, v in self.inputs.items()},
            texts=None if self.texts is None else tuple(self.texts[i] for i in idx.tolist()),
            labels=None if self.labels is None else self.labels[idx],
        )


@dataclass(frozen=True)
class Dataset:
    """A named data set: splits by name ("train", "calibration", "heldout", and "all" for files)."""

    name: str
    splits: dict[str, Split]
    kind: str  # "text" or "arrays"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"data set kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for split_name, split in self.splits.items():
            if split.kind != self.kind:
                raise DataError(
                    f"split {split_name!r} of data set {self.name!r} holds {split.kind}, "
                    f"the data set is of kind {self.kind!r}"
                )

    def split(self, name: str) -> Split:
        """The split called `name`; an unknown name raises ConfigError listing the available ones."""
        try:
            return self.splits[name]
        except KeyError:
            raise ConfigError(
                f"data set {self.name!r} has no split {name!r}: use one of {', '.join(self.splits)}"
            ) from None

    def heldout_or_first(self) -> Split:
        """The held-out split, or the first one of a data set without it: representative samples to send."""
        return self.splits["heldout"] if "heldout" in self.splits else next(iter(self.splits.values()))


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    input_specs: dict[str, tuple[str, tuple]] | None = None,
) -> Dataset:
    """Load a zoo data set by name ("digits", "docstrings") or the arrays of an `.npz` file.

    input_specs: model input name -> (numpy dtype name, shape with ints or strings for dynamic axes,
    first axis = samples). When given, array data sets are checked against it and keep only those inputs.
    Example: `load_dataset("data.npz", input_specs={"pixels": ("float32", ("batch", 1, 8, 8))})`.
    """
    from infertune.data import npz  # lazy: npz imports this module

    text = os.fspath(name_or_path)
    if text in DATASETS:
        dataset = _load_zoo(text)
        if input_specs is not None and dataset.kind == "arrays":
            npz.check_splits_against_specs(dataset, input_specs)
        return dataset
    path = Path(text)
    if path.is_file():
        return npz.load_npz(path, input_specs=input_specs)
    if path.suffix == ".npz" or os.sep in text or path.exists():
        hint = "is a directory" if path.is_dir() else "does not exist"
        raise DataError(f"data file {text!r} {hint}: give the path of an .npz file")
    raise DataError(f"unknown data set {text!r}: use one of {', '.join(DATASETS)}, or a path to an .npz file")


def _load_zoo(name: str) -> Dataset:
    if name == "digits":
        from infertune.data.digits import load_digits

        return load_digits()
    if name == "docstrings":
        from infertune.data.docstrings import load_docstrings

        return load_docstrings()
    raise AssertionError(f"DATASETS lists {name!r} but no loader handles it")  # a bug in this module

"""Data sets as named splits of samples, and how a file is split into train, calibration and held-out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from infertune.data.spec import DataSpec
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
    spec: "DataSpec | None" = None  # what reloads it in another process (set by infertune.resolve)

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

    def sizes(self) -> dict[str, int]:
        """Samples per split, in the order train, calibration, heldout (the splits that exist)."""
        return {name: len(self.splits[name]) for name in ("train", "calibration", "heldout") if name in self.splits}

    def describe(self) -> str:
        """One line: the data set and its split sizes, e.g. 'reviews.jsonl: train 250, calibration 250, heldout 500'."""
        sizes = ", ".join(f"{name} {count:,}" for name, count in self.sizes().items())
        return f"{self.name} ({self.kind}): {sizes}"

    def heldout_or_first(self) -> Split:
        """The held-out split, or the first one of a data set without it: representative samples to send."""
        return self.splits["heldout"] if "heldout" in self.splits else next(iter(self.splits.values()))


SPLIT_SEED = 0
MIN_SAMPLES_TO_SPLIT = 8  # below this every derived split is the whole file


def file_splits(all_split: Split, heldout: Split | None = None) -> dict[str, Split]:
    """"all" (file order) plus disjoint "train", "calibration", "heldout" from a permutation seeded with 0.

    heldout = half, calibration = a quarter, train = the rest; each keeps file order. With an explicit `heldout`
    split, the file gives calibration (half) and train (the rest). Below 8 samples every derived split is the
    whole file, since there is too little to hold anything out.
    """
    n = len(all_split)
    if n < MIN_SAMPLES_TO_SPLIT:
        parts = {name: np.arange(n) for name in ("train", "calibration", "heldout")}
    else:
        perm = np.random.default_rng(SPLIT_SEED).permutation(n)
        n_heldout = 0 if heldout is not None else n // 2
        n_calibration = (n - n_heldout) // 2
        parts = {
            "train": perm[n_heldout + n_calibration:],
            "calibration": perm[n_heldout:n_heldout + n_calibration],
            "heldout": perm[:n_heldout],
        }
    splits = {"all": all_split}
    for name, idx in parts.items():
        splits[name] = all_split.take(np.sort(idx), name=name)
    if heldout is not None:
        splits["heldout"] = heldout.take(np.arange(len(heldout)), name="heldout")
    return splits

"""`load_dataset`: a data set by zoo name or file (arrays in `.npz`, texts in `.txt`, `.jsonl`, `.csv`, `.tsv`,
`.parquet`), split into train, calibration and held-out."""

from __future__ import annotations

import os
from pathlib import Path

from infertune.data import npz
from infertune.data.dataset import DATASETS, Dataset, Split, file_splits
from infertune.data.digits import load_digits
from infertune.data.docstrings import load_docstrings
from infertune.data.text import TEXT_SUFFIXES, load_text_file
from infertune.errors import ConfigError, DataError


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    input_specs: dict[str, tuple[str, tuple]] | None = None,
    heldout: str | os.PathLike[str] | None = None,
    text_field: str = "text",
    label_field: str = "label",
    label2id: dict[str, int] | None = None,
    read_labels: bool = True,
) -> Dataset:
    """Load a zoo data set by name ("digits", "docstrings"), an `.npz` file of arrays, or a text file (`.txt`,
    `.jsonl`, `.csv`, `.tsv`, `.parquet`).

    input_specs: model input name -> (numpy dtype name, shape with ints or strings for dynamic axes,
    first axis = samples). When given, array data sets are checked against it and keep only those inputs.
    heldout: a file whose samples form the held-out split; the data file then gives calibration and train.
    text_field, label_field, label2id: which fields of a text file hold the text and the label, and how label
    names map to class ids. read_labels=False ignores labels (for sending texts to a server).
    Example: `load_dataset("reviews.jsonl", label2id={"negative": 0, "positive": 1})`.
    """
    text = os.fspath(name_or_path)
    if text in DATASETS:
        if heldout is not None:
            raise ConfigError(f"--heldout applies to a data file, not to the zoo data set '{text}', which has its "
                              f"own held-out split")
        dataset = _load_zoo(text)
        if input_specs is not None and dataset.kind == "arrays":
            npz.check_splits_against_specs(dataset, input_specs)
        return dataset
    options = dict(input_specs=input_specs, text_field=text_field, label_field=label_field, label2id=label2id,
                   read_labels=read_labels)
    everything = _load_file(text, **options)
    held = None
    if heldout is not None:
        held = _load_file(os.fspath(heldout), **options, name="heldout", role="--heldout file")
        if held.kind != everything.kind:
            raise DataError(f"--heldout file '{heldout}' holds {held.kind}, the data file '{text}' holds "
                            f"{everything.kind}: give both in the same form")
    return Dataset(name=text, splits=file_splits(everything, held), kind=everything.kind)


def _load_file(text: str, *, input_specs, text_field: str, label_field: str, label2id, read_labels: bool,
               name: str = "all", role: str = "data file") -> Split:
    path = Path(text)
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return npz.load_npz_split(path, input_specs=input_specs, name=name)
        if path.suffix.lower() in TEXT_SUFFIXES:
            return load_text_file(path, text_field=text_field, label_field=label_field, label2id=label2id,
                                  read_labels=read_labels, name=name)
        raise DataError(f"{role} '{text}' has the unknown extension '{path.suffix}': use .npz for arrays, or .txt, "
                        f".jsonl, .csv, .tsv or .parquet for texts")
    if path.suffix or os.sep in text or path.exists() or role != "data file":
        hint = "is a directory" if path.is_dir() else "does not exist"
        raise DataError(f"{role} '{text}' {hint}: give the path of a data file (.npz, .txt, .jsonl, .csv, .tsv "
                        f"or .parquet)")
    raise DataError(f"unknown data set {text!r}: use one of {', '.join(DATASETS)}, or the path of a data file "
                    f"(.npz, .txt, .jsonl, .csv, .tsv or .parquet)")


def _load_zoo(name: str) -> Dataset:
    if name == "digits":
        return load_digits()
    if name == "docstrings":
        return load_docstrings()
    raise AssertionError(f"DATASETS lists {name!r} but no loader handles it")  # a bug in this module

"""Data sets (zoo names, .npz files, text files), their splits, and output-comparison metrics; numpy only."""

from infertune.data.dataset import DATASETS, Dataset, Split, file_splits
from infertune.data.load import load_dataset
from infertune.data.metrics import (
    compare_outputs,
    cosine_similarity_stats,
    neighbour_agreement,
    top1_accuracy,
    top1_agreement,
)
from infertune.data.npz import save_npz
from infertune.data.spec import DataSpec

__all__ = [
    "DATASETS",
    "DataSpec",
    "Dataset",
    "Split",
    "compare_outputs",
    "cosine_similarity_stats",
    "file_splits",
    "load_dataset",
    "neighbour_agreement",
    "save_npz",
    "top1_accuracy",
    "top1_agreement",
]

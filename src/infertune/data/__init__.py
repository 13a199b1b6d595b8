"""Data sets (zoo names or .npz files), their splits, and output-comparison metrics; numpy only."""

from infertune.data.dataset import DATASETS, Dataset, Split, load_dataset
from infertune.data.metrics import (
    compare_outputs,
    cosine_similarity_stats,
    neighbour_agreement,
    top1_accuracy,
    top1_agreement,
)
from infertune.data.npz import save_npz

__all__ = [
    "DATASETS",
    "Dataset",
    "Split",
    "compare_outputs",
    "cosine_similarity_stats",
    "load_dataset",
    "neighbour_agreement",
    "save_npz",
    "top1_accuracy",
    "top1_agreement",
]

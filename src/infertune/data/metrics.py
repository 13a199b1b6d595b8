"""How close a candidate model's outputs are to the reference's, and accuracy against labels; numpy only.

All metrics compute in float64. Rows are the first axis; any further axes are flattened into one row.
"""

from __future__ import annotations

import numpy as np

CLASS_SCORES_MAX_COLUMNS = 100  # a 2-D output this narrow is read as class scores
EMBEDDING_MIN_COLUMNS = 101  # a 2-D output this wide is read as embeddings
NEIGHBOURS = 10
_ROW_BLOCK = 1024  # rows of the similarity matrix held at once by neighbour_agreement


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose highest score is at the label's class.

    Example: `top1_accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])) == 0.5`.
    """
    scores = _as_scores(logits, "logits")
    targets = np.asarray(labels)
    if targets.shape != (scores.shape[0],):
        raise ValueError(f"labels must have shape ({scores.shape[0]},), one per row of logits "
                         f"{scores.shape}, got {targets.shape}")
    return float(np.mean(np.argmax(scores, axis=1) == targets))


def top1_agreement(reference_logits: np.ndarray, logits: np.ndarray) -> float:
    """Fraction of rows where the candidate's top class equals the reference's.

    Example: `top1_agreement(np.eye(3), np.eye(3)[[0, 2, 1]]) == 1 / 3`.
    """
    ref = _as_scores(reference_logits, "reference_logits")
    cand = _as_scores(logits, "logits")
    _same_shape(ref, cand)
    return float(np.mean(np.argmax(ref, axis=1) == np.argmax(cand, axis=1)))


def row_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine similarity of each reference row with the candidate row (samples on the first axis).

    Two all-zero rows count as identical (1.0); one all-zero row against a non-zero one as 0.0.
    A 0-D or 1-D array is one row.
    """
    ref, cand = _rows(reference), _rows(candidate)
    _same_shape(np.asarray(reference), np.asarray(candidate))
    dot = np.einsum("ij,ij->i", ref, cand)
    norm_ref, norm_cand = np.linalg.norm(ref, axis=1), np.linalg.norm(cand, axis=1)
    denom = norm_ref * norm_cand
    cos = np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 0)
    return np.where((norm_ref == 0) & (norm_cand == 0), 1.0, np.clip(cos, -1.0, 1.0))


def cosine_similarity_stats(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(mean, min) over rows of the cosine similarity between reference and candidate rows.

    Example: `cosine_similarity_stats([[1, 0]], [[1, 1]])` ~ (0.707, 0.707).
    """
    cos = row_cosines(reference, candidate)
    return float(np.mean(cos)), float(np.min(cos))


def neighbour_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = NEIGHBOURS) -> float:
    """Mean overlap of each row's k nearest other rows (by cosine) under reference and under candidate.

    For each row i: |knn_ref(i) & knn_cand(i)| / k, where a row is never its own neighbour; the mean
    over rows. Needs more than k rows. Example: identical embeddings give 1.0.
    """
    ref, cand = _rows(reference), _rows(candidate)
    _same_shape(np.asarray(reference), np.asarray(candidate))
    n = ref.shape[0]
    if not isinstance(k, (int, np.integer)) or k < 1 or k >= n:
        raise ValueError(f"k must be an integer from 1 to rows - 1 = {n - 1}, got {k!r}")
    ref_unit, cand_unit = _unit_rows(ref), _unit_rows(cand)
    overlap = 0
    for start in range(0, n, _ROW_BLOCK):
        stop = min(start + _ROW_BLOCK, n)
        ref_knn = _nearest(ref_unit, start, stop, k)
        cand_knn = _nearest(cand_unit, start, stop, k)
        overlap += int(np.count_nonzero(ref_knn[:, :, None] == cand_knn[:, None, :]))
    return overlap / (n * k)


def compare_outputs(
    reference: np.ndarray, candidate: np.ndarray, *, labels: np.ndarray | None = None
) -> dict[str, float]:
    """Every metric that fits this output's shape, by name.

    Always `max_abs_diff`, `cosine_mean`, `cosine_min`. For 2-D class scores (at most 100 columns):
    `top1_agreement`, and with `labels` also `top1_reference` and `top1_candidate`. For 2-D embeddings
    (more than 100 columns, more than 10 rows): `neighbour_agreement_10`. Labels are ignored for
    outputs that are not class scores. Example: `compare_outputs(ref_logits, q_logits, labels=y)`.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    _same_shape(ref, cand)
    if ref.size == 0:
        raise ValueError(f"cannot compare empty outputs of shape {ref.shape}")
    cosine_mean, cosine_min = cosine_similarity_stats(ref, cand)
    result = {
        "max_abs_diff": float(np.max(np.abs(ref - cand))),
        "cosine_mean": cosine_mean,
        "cosine_min": cosine_min,
    }
    if ref.ndim == 2 and 2 <= ref.shape[1] <= CLASS_SCORES_MAX_COLUMNS:
        result["top1_agreement"] = top1_agreement(ref, cand)
        if labels is not None:
            result["top1_reference"] = top1_accuracy(ref, labels)
            result["top1_candidate"] = top1_accuracy(cand, labels)
    if ref.ndim == 2 and ref.shape[1] >= EMBEDDING_MIN_COLUMNS and ref.shape[0] > NEIGHBOURS:
        result[f"neighbour_agreement_{NEIGHBOURS}"] = neighbour_agreement(ref, cand, k=NEIGHBOURS)
    return result


def _as_scores(values: np.ndarray, what: str) -> np.ndarray:
    scores = np.asarray(values, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"{what} must be 2-D (rows, classes) with at least one of each, got shape {scores.shape}")
    return scores


def _rows(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError(f"cannot compare an empty array of shape {arr.shape}")
    return arr.reshape(1, -1) if arr.ndim <= 1 else arr.reshape(arr.shape[0], -1)


def _same_shape(reference: np.ndarray, candidate: np.ndarray) -> None:
    if reference.shape != candidate.shape:
        raise ValueError(f"reference has shape {reference.shape} but candidate has shape {candidate.shape}: "
                         "compare outputs of the same model input")


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def _nearest(unit: np.ndarray, start: int, stop: int, k: int) -> np.ndarray:
    """Indices of the k most similar other rows for rows start..stop-1, unsorted within each row."""
    sim = unit[start:stop] @ unit.T
    sim[np.arange(stop - start), np.arange(start, stop)] = -np.inf
    return np.argpartition(-sim, k - 1, axis=1)[:, :k]

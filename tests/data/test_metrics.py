"""Output-comparison metrics on small cases computed by hand."""

import math

import numpy as np
import pytest

from infertune.data.metrics import (
    compare_outputs,
    cosine_similarity_stats,
    neighbour_agreement,
    top1_accuracy,
    top1_agreement,
)


def test_top1_accuracy_counts_rows_whose_argmax_is_the_label():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert top1_accuracy(logits, np.array([1, 1, 1, 0])) == 0.75


def test_top1_accuracy_rejects_labels_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\).*got \(3,\)"):
        top1_accuracy(np.zeros((2, 3)), np.array([0, 1, 2]))


def test_top1_agreement_is_fraction_of_equal_argmax():
    assert top1_agreement(np.eye(3), np.eye(3)[[0, 2, 1]]) == pytest.approx(1 / 3)
    assert top1_agreement(np.eye(3), 2 * np.eye(3)) == 1.0


def test_cosine_similarity_stats_are_mean_and_min_over_rows():
    reference = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    candidate = np.array([[1.0, 1.0], [0.0, 5.0], [-3.0, -4.0]])
    mean, minimum = cosine_similarity_stats(reference, candidate)
    assert mean == pytest.approx((1 / math.sqrt(2) + 1.0 - 1.0) / 3)
    assert minimum == pytest.approx(-1.0)


def test_cosine_similarity_counts_two_zero_rows_as_identical_and_zero_vs_nonzero_as_zero():
    mean, minimum = cosine_similarity_stats(np.array([[0.0, 0.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [1.0, 0.0]]))
    assert (mean, minimum) == (0.5, 0.0)


def test_cosine_similarity_flattens_trailing_axes_into_one_row_per_sample():
    reference = np.ones((2, 3, 4))
    candidate = np.ones((2, 3, 4))
    candidate[1] *= -1
    assert cosine_similarity_stats(reference, candidate) == pytest.approx((0.0, -1.0))


def test_neighbour_agreement_is_one_for_identical_and_scaled_embeddings():
    points = np.random.default_rng(0).normal(size=(30, 8))
    assert neighbour_agreement(points, points, k=5) == 1.0
    assert neighbour_agreement(points, 3.0 * points, k=5) == 1.0


def test_neighbour_agreement_counts_shared_neighbours_by_hand():
    # rows 0,1 point one way and rows 2,3 the other; with k=1 each row's neighbour is its pair under
    # the reference. The candidate swaps rows 1 and 2 in direction, so no row keeps its neighbour.
    reference = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    candidate = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])
    assert neighbour_agreement(reference, candidate, k=1) == 0.0
    # k=2, nearest others by cosine: reference {1,3} {0,3} {1,3} {1,2}, candidate {2,3} {2,3} {0,3} {1,2};
    # shared 1 + 1 + 1 + 2 = 5 of 8
    assert neighbour_agreement(reference, candidate, k=2) == pytest.approx(5 / 8)

def test_neighbour_agreement_rejects_k_not_below_row_count():
    with pytest.raises(ValueError, match="k must be an integer from 1 to rows - 1 = 4, got 5"):
        neighbour_agreement(np.ones((5, 3)), np.ones((5, 3)), k=5)


def test_compare_outputs_on_class_scores_reports_agreement_and_top1_with_labels():
    reference = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]], dtype=np.float32)
    candidate = np.array([[2.5, 1.0, 0.0], [0.0, 1.0, 3.0]], dtype=np.float32)
    metrics = compare_outputs(reference, candidate, labels=np.array([0, 1]))
    assert metrics["max_abs_diff"] == 2.0
    assert metrics["top1_agreement"] == 0.5
    assert metrics["top1_reference"] == 1.0 and metrics["top1_candidate"] == 0.5
    assert "neighbour_agreement_10" not in metrics
    assert set(metrics) == {"max_abs_diff", "cosine_mean", "cosine_min", "top1_agreement",
                            "top1_reference", "top1_candidate"}


def test_compare_outputs_on_embeddings_reports_neighbour_agreement_not_top1():
    embeddings = np.random.default_rng(1).normal(size=(20, 128)).astype(np.float32)
    metrics = compare_outputs(embeddings, embeddings, labels=np.zeros(20, dtype=np.int64))
    assert metrics == {"max_abs_diff": 0.0, "cosine_mean": pytest.approx(1.0), "cosine_min": pytest.approx(1.0),
                       "neighbour_agreement_10": 1.0}


def test_compare_outputs_on_other_shapes_reports_only_distance_and_cosine():
    metrics = compare_outputs(np.ones((2, 3, 4)), np.zeros((2, 3, 4)))
    assert metrics == {"max_abs_diff": 1.0, "cosine_mean": 0.0, "cosine_min": 0.0}


def test_compare_outputs_rejects_different_shapes_naming_both():
    with pytest.raises(ValueError, match=r"\(2, 10\).*\(2, 9\)"):
        compare_outputs(np.zeros((2, 10)), np.zeros((2, 9)))


def test_compare_outputs_computes_in_float64_so_float16_differences_do_not_overflow():
    reference = np.array([[60000.0, 0.0]], dtype=np.float16)
    candidate = np.array([[-60000.0, 0.0]], dtype=np.float16)
    assert compare_outputs(reference, candidate)["max_abs_diff"] == 120000.0

import numpy as np

from infertune.search.trial import metric


def test_embeddings_measure_cosine_and_top10_neighbours_against_the_baseline():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((64, 16)).astype(np.float32)
    noisy = reference + 0.3 * rng.standard_normal(reference.shape).astype(np.float32)
    found = metric("embedding", noisy, None, reference)
    assert found["name"] == "cosine" and 0.9 < found["value"] < 1.0
    assert 0.0 < found["top10_agreement"] < 1.0
    assert metric("embedding", reference, None, None) == {"name": "cosine", "value": 1.0, "top10_agreement": 1.0}


def test_classifiers_use_labels_when_given_else_agreement():
    logits = np.eye(4, dtype=np.float32)
    assert metric("classification", logits, np.array([0, 1, 2, 0]), None) == {"name": "top1", "value": 0.75}
    assert metric("classification", logits, None, logits[[0, 1, 2, 0]])["value"] == 0.75

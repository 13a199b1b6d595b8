"""The torch passes on real data where quality matters (digits), and their honesty where they do not pay."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from infertune.backends import load_session
from infertune.data import load_dataset, top1_accuracy
from infertune.resolver import load_model
from infertune.passes.cluster import WeightSharing, kmeans_1d
from infertune.passes.distill import Distill
from infertune.passes.lowrank import LowRank
from infertune.passes.prune import MagnitudePrune, StructuredPrune
from infertune.passes.registry import PassContext, apply
from infertune.passes.sparse import SparseLinear
from infertune.passes.storage import load_compact


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def digits_cnn():
    return load_model("digits-cnn")


def heldout_top1(model, digits) -> float:
    heldout = digits.split("heldout")
    logits = load_session(model, "torch").run(model.inputs_for(heldout, slice(None)))["logits"]
    return top1_accuracy(logits, heldout.labels)


def test_structured_pruning_with_fine_tuning_keeps_digits_top1(digits_cnn, digits, tmp_path):
    out = apply(digits_cnn, StructuredPrune(amount=0.5, fine_tune_epochs=8),
                PassContext(workdir=tmp_path, dataset=digits))
    assert out.details["parameters_after"] < 0.4 * out.details["parameters_before"]
    assert heldout_top1(out.model, digits) >= heldout_top1(digits_cnn, digits) - 0.01


def test_taylor_importance_prunes_and_runs(digits_cnn, digits, tmp_path):
    out = apply(digits_cnn, StructuredPrune(amount=0.5, importance="taylor", fine_tune_epochs=0),
                PassContext(workdir=tmp_path, dataset=digits))
    assert out.model.module.features[0][0].out_channels == 16


def test_distilled_student_keeps_digits_top1(digits_cnn, digits, tmp_path):
    out = apply(digits_cnn, Distill(width=0.5, epochs=12), PassContext(workdir=tmp_path, dataset=digits))
    assert out.details["parameters_after"] < 0.4 * out.details["parameters_before"]
    assert heldout_top1(out.model, digits) >= heldout_top1(digits_cnn, digits) - 0.01


def test_distilled_transformer_student_keeps_chosen_layers(bert_model, bert_dataset, tmp_path):
    out = apply(bert_model, Distill(layers=1, epochs=1), PassContext(workdir=tmp_path, dataset=bert_dataset))
    assert len(out.model.module.bert.encoder.layer) == 1
    assert len(bert_model.module.bert.encoder.layer) == 2


def test_structured_pruning_of_a_transformer_removes_heads_and_ffn_neurons(bert_model, bert_dataset, tmp_path):
    out = apply(bert_model, StructuredPrune(amount=0.5, fine_tune_epochs=0),
                PassContext(workdir=tmp_path, dataset=bert_dataset))
    layer = out.model.module.bert.encoder.layer[0]
    assert layer.attention.self.num_attention_heads == 1 and layer.intermediate.dense.out_features == 32
    assert out.model.meta["num_heads"] == 1
    from infertune.testing.models import bert_data

    assert load_session(out.model, "torch").run(bert_data(4))["output"].shape == (4, 32)


def test_activation_importance_removes_the_channels_that_never_fire_where_weight_norms_keep_them():
    """Four channels with the largest weights but a bias that keeps them below zero: after the ReLU they are
    always 0, so they matter least. Their weight norm ranks them first; their measured activation, last."""
    from infertune.passes.structure import activation_scores, channel_chains, prune_chains

    torch.manual_seed(0)

    def build():
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3),
                                  torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3))
        with torch.no_grad():
            net[0].weight[:4] *= 10
            net[0].bias[:4] = -1e3  # dead channels
        return net

    batches = [[torch.randn(16, 1, 8, 8)] for _ in range(4)]
    by_activation = build()
    by_norm = copy.deepcopy(by_activation)
    scores = activation_scores(by_activation, batches)
    assert torch.all(scores[id(by_activation[0].weight)][:4] == 0)
    prune_chains(channel_chains(by_activation), 0.5, norm="activation", scores=scores)
    prune_chains(channel_chains(by_norm), 0.5, norm="l1")
    assert by_activation[0].out_channels == by_norm[0].out_channels == 4
    assert torch.all(by_activation[0].bias > -1e3) and torch.all(by_norm[0].bias == -1e3)
    # the second chain (conv -> linear after flatten) was cut by activation too, and the network still runs
    assert by_activation[2].out_channels == 2 and by_activation[5].in_features == 2 * 4 * 4
    assert by_activation(torch.randn(8, 1, 8, 8)).shape == (8, 3)


def test_activation_importance_prunes_a_transformer_and_it_runs(bert_model, bert_dataset, tmp_path):
    out = apply(bert_model, StructuredPrune(amount=0.5, importance="activation", fine_tune_epochs=0),
                PassContext(workdir=tmp_path, dataset=bert_dataset))
    layer = out.model.module.bert.encoder.layer[0]
    assert layer.attention.self.num_attention_heads == 1 and layer.intermediate.dense.out_features == 32
    from infertune.testing.models import bert_data

    assert load_session(out.model, "torch").run(bert_data(4))["output"].shape == (4, 32)


def test_magnitude_pruning_reports_dense_storage_honestly_and_sparse_storage_smaller(mlp_model, tmp_path):
    dense = apply(mlp_model, MagnitudePrune(sparsity=0.8), PassContext(workdir=tmp_path / "d"))
    assert dense.details["sparsity"] == pytest.approx(0.8, abs=0.02) and "no smaller" in dense.notes[0]
    sparse = apply(mlp_model, MagnitudePrune(sparsity=0.8, storage="sparse"), PassContext(workdir=tmp_path / "s"))
    dense_bytes = load_session(dense.model, "torch").artifact_bytes
    assert load_session(sparse.model, "torch").artifact_bytes < 0.6 * dense_bytes
    restored = load_compact(sparse.model.meta["storage_path"])
    assert all(torch.equal(restored[k], v) for k, v in sparse.model.module.state_dict().items())


def test_weight_sharing_stores_indices_and_codebook(bert_model, tmp_path):
    out = apply(bert_model, WeightSharing(bits=4), PassContext(workdir=tmp_path))
    assert out.details["stored_bytes"] < 0.6 * out.details["dense_bytes"]
    layer = out.model.module.bert.encoder.layer[0].intermediate.dense.weight
    assert len(torch.unique(layer)) <= 16
    restored = load_compact(out.model.meta["storage_path"])
    assert torch.equal(restored["bert.encoder.layer.0.intermediate.dense.weight"], layer.detach())


def test_centroid_fine_tuning_keeps_the_shared_values(digits_cnn, digits, tmp_path):
    out = apply(digits_cnn, WeightSharing(bits=4, fine_tune_epochs=1), PassContext(workdir=tmp_path, dataset=digits))
    weight = out.model.module.classifier[1].weight
    assert len(torch.unique(weight)) <= 16
    assert heldout_top1(out.model, digits) >= heldout_top1(digits_cnn, digits) - 0.02


def test_kmeans_recovers_well_separated_values():
    values = np.concatenate([np.full(50, -1.0), np.full(50, 0.5), np.full(50, 2.0)])
    labels, centroids = kmeans_1d(values, 4)
    assert set(np.round(centroids[labels], 6)) == {-1.0, 0.5, 2.0}


def test_lowrank_factors_a_low_rank_layer_exactly(mlp_model, tmp_path):
    low = dataclasses.replace(mlp_model, module=copy.deepcopy(mlp_model.module))
    with torch.no_grad():
        w = low.module[0].weight
        w.copy_(torch.randn(32, 2) @ torch.randn(2, 16))  # rank 2
    out = apply(low, LowRank(energy=0.999, min_speedup=0.0), PassContext(workdir=tmp_path))
    assert out.details["layers"][0]["rank"] == 2 and out.details["layers"][0]["factored"]
    x = {"input": np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)}
    np.testing.assert_allclose(load_session(out.model, "torch").run(x)["output"],
                               load_session(low, "torch").run(x)["output"], rtol=1e-3, atol=1e-4)


def test_sparse_linear_says_when_it_does_not_pay(mlp_model, tmp_path):
    out = apply(mlp_model, SparseLinear(), PassContext(workdir=tmp_path))
    assert any("no speed-up on this hardware" in note for note in out.notes)


def test_sparse_linear_runs_sparse_layers_exactly(mlp_model, tmp_path):
    pruned = apply(mlp_model, MagnitudePrune(sparsity=0.9, scope="layer"), PassContext(workdir=tmp_path / "p")).model
    out = apply(pruned, SparseLinear(min_speedup=0.0), PassContext(workdir=tmp_path / "s"))
    assert sum(row["sparse"] for row in out.details["layers"]) == 2
    x = {"input": np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)}
    np.testing.assert_allclose(load_session(out.model, "torch").run(x)["output"],
                               load_session(pruned, "torch").run(x)["output"], rtol=1e-4, atol=1e-5)

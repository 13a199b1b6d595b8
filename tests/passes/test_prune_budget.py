"""Pruning to the budget stops at the budget: the chosen sparsity's validation drop is within it, and the next
step's is not (or the largest sparsity allowed was reached)."""

from infertune.passes.prune_budget import TOLERANCE, PruneToBudget, targets
from infertune.passes.registry import PassContext, apply


def test_schedules_increase_to_the_largest_sparsity_allowed():
    assert targets(PruneToBudget(step=0.25, max_sparsity=0.9)) == [0.25, 0.5, 0.75, 0.9]
    exponential = targets(PruneToBudget(step=0.5, schedule="exponential", max_sparsity=0.9))
    assert exponential == [0.5, 0.75, 0.875, 0.9]


def _stops_at_the_budget(out, budget):
    details = out.details
    rows = details["schedule"]
    accepted = [row for row in rows if row["within_budget"]]
    assert all(row["drop"] <= budget + TOLERANCE for row in accepted)
    assert details["drop"] <= budget + TOLERANCE
    if details["stopped_by"] == "budget":
        assert rows[-1]["drop"] > budget + TOLERANCE and not rows[-1]["within_budget"]
        assert details["sparsity"] == (accepted[-1]["sparsity"] if accepted else 0.0)
    else:
        assert details["stopped_by"] == "max_sparsity" and details["sparsity"] == rows[-1]["sparsity"]


def test_pruning_a_transformer_stops_at_the_largest_sparsity_within_the_budget(bert_model, bert_dataset, tmp_path):
    # a random tiny BERT's mean-pooled embeddings barely move (cosine drops of 2e-5 at 25 %, 1.5e-4 at 50 %)
    out = apply(bert_model, PruneToBudget(max_drop=5e-5, step=0.25, fine_tune_epochs=0),
                PassContext(workdir=tmp_path, dataset=bert_dataset))
    _stops_at_the_budget(out, 5e-5)
    assert out.details["stopped_by"] == "budget" and out.details["sparsity"] == 0.25
    assert out.details["parameters_after"] < out.details["parameters_before"]


def test_a_looser_budget_chooses_a_larger_sparsity(bert_model, bert_dataset, tmp_path):
    found = {}
    for budget in (5e-5, 1e-3):
        out = apply(bert_model, PruneToBudget(max_drop=budget, step=0.25, fine_tune_epochs=0),
                    PassContext(workdir=tmp_path / str(budget), dataset=bert_dataset))
        found[budget] = out.details["sparsity"]
    assert found[1e-3] > found[5e-5]


def test_pruning_with_fine_tuning_stops_at_the_budget_or_the_largest_sparsity(mlp_model, mlp_dataset, tmp_path):
    out = apply(mlp_model, PruneToBudget(max_drop=0.05, step=0.25, max_sparsity=0.75, fine_tune_epochs=2, lr=1e-3),
                PassContext(workdir=tmp_path, dataset=mlp_dataset))
    _stops_at_the_budget(out, 0.05)
    assert "sparsity" in out.notes[0] or "unpruned" in out.notes[0]
    assert out.details["train_seconds"] >= 0


def test_a_budget_of_everything_reaches_the_largest_sparsity(mlp_model, mlp_dataset, tmp_path):
    out = apply(mlp_model, PruneToBudget(max_drop=1.0, step=0.25, max_sparsity=0.75, fine_tune_epochs=0),
                PassContext(workdir=tmp_path, dataset=mlp_dataset))
    assert out.details["stopped_by"] == "max_sparsity" and out.details["sparsity"] == 0.75
    assert out.model.module[0].out_features == 8  # 32 hidden neurons, a quarter kept

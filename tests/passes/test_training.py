"""The shared training loop's budgets and checkpoints, and the pass context's held-out filter."""

import dataclasses

import pytest
import torch

from infertune.data import Dataset, Split
from infertune.passes.registry import PassContext
from infertune.passes.training import train


def _student(mlp_model):
    import copy

    return dataclasses.replace(mlp_model, module=copy.deepcopy(mlp_model.module))


def test_training_stops_at_its_step_budget(mlp_model, mlp_dataset):
    stats = train(_student(mlp_model), mlp_dataset.split("train"), epochs=50, lr=1e-3, batch=8, max_steps=3)
    assert stats.steps == 3 and stats.stopped_by == "steps" and stats.seconds > 0


def test_training_stops_at_its_time_budget(mlp_model, mlp_dataset):
    stats = train(_student(mlp_model), mlp_dataset.split("train"), epochs=10_000, lr=1e-3, batch=8, max_seconds=0.3)
    assert stats.stopped_by == "time" and stats.seconds < 5


def test_training_resumes_from_its_checkpoint_to_the_same_weights(mlp_model, mlp_dataset, tmp_path):
    split = mlp_dataset.split("train")
    straight = _student(mlp_model)
    train(straight, split, epochs=4, lr=1e-2, batch=8)
    resumed = _student(mlp_model)
    checkpoint = tmp_path / "checkpoint.pt"
    train(resumed, split, epochs=2, lr=1e-2, batch=8, checkpoint=checkpoint)
    again = _student(mlp_model)  # a fresh process would start from the untrained model
    stats = train(again, split, epochs=4, lr=1e-2, batch=8, checkpoint=checkpoint)
    assert stats.epochs == pytest.approx(2.0)
    for a, b in zip(straight.module.parameters(), again.module.parameters()):
        torch.testing.assert_close(a, b)


def test_pass_context_filters_heldout_texts_without_handing_them_out(tmp_path):
    data = Dataset(name="t", kind="text", splits={"train": Split(name="train", texts=("a b.",)),
                                                  "heldout": Split(name="heldout", texts=("Kept Out.",))})
    ctx = PassContext(workdir=tmp_path, dataset=data)
    assert ctx.without_heldout(["kept   out.", "New one."]) == ("New one.",)
    with pytest.raises(ValueError):
        ctx.split("heldout")


def test_distill_corpus_adds_package_sentences_but_never_heldout_ones(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from infertune.data import corpus
    from infertune.passes.distill import _with_corpus

    monkeypatch.setenv("INFERTUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(corpus, "DEFAULT_PACKAGES", ("json", "email"))
    everything = corpus.package_sentences(("json", "email"))
    train_split = Split(name="train", texts=(everything[0],))
    data = Dataset(name="t", kind="text", splits={"train": train_split,
                                                  "heldout": Split(name="heldout", texts=everything[1:3])})
    ctx = PassContext(workdir=tmp_path, dataset=data)
    split, source = _with_corpus(SimpleNamespace(is_text=True, name="t"), train_split, 10_000, ctx)
    assert split.texts[0] == everything[0] and split.labels is None
    assert not set(split.texts) & set(everything[1:3])
    assert len(split.texts) == len(set(split.texts)) == len(everything) - 2
    assert "corpus sentences" in source


def test_distill_corpus_on_an_array_model_says_to_drop_it(mlp_model, mlp_dataset, tmp_path):
    from infertune.errors import ConfigError
    from infertune.passes.distill import Distill
    from infertune.passes.registry import apply

    with pytest.raises(ConfigError, match="corpus=0"):
        apply(mlp_model, Distill(epochs=1, corpus=100), PassContext(workdir=tmp_path, dataset=mlp_dataset))


def test_distill_resumes_from_its_checkpoint_in_the_same_workdir(mlp_model, mlp_dataset, tmp_path):
    from infertune.passes.distill import Distill
    from infertune.passes.registry import apply

    first = apply(mlp_model, Distill(epochs=2), PassContext(workdir=tmp_path, dataset=mlp_dataset))
    assert list(tmp_path.glob("checkpoint-*.pt"))
    again = apply(mlp_model, Distill(epochs=2), PassContext(workdir=tmp_path, dataset=mlp_dataset))
    assert again.details["train_seconds"] < 0.5  # both epochs were in the checkpoint: nothing left to train
    for a, b in zip(first.model.module.parameters(), again.model.module.parameters()):
        torch.testing.assert_close(a, b)

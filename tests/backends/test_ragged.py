"""A batch cut by length (`by_length`, backends/ragged.py): on models nobody here tuned for (a user's BERT
classifier saved with save_pretrained, a tiny mean-pooled BERT), the parts run without the padding their rows do
not need and the outputs come back in input order, equal to the whole batch's; where the numbers could depend on
the padding (per-token outputs, no attention mask) it never applies, and the search offers it only where it can."""

import numpy as np
import pytest

from infertune.backends import load_session
from infertune.backends.ragged import balanced_cuts, by_length, in_input_order, length_axes, real_lengths, \
    sequential_cuts
from infertune.resolver import load_model


def test_cuts_balance_parallel_parts_and_save_work_for_sequential_ones():
    lengths = np.array([4, 5, 6, 8, 9, 10, 12, 40])
    parts = balanced_cuts(lengths, 2)
    assert parts == [(0, 6), (6, 8)]  # 6 rows of 10 (60) and 2 of 40 (80) at once, not 4 of 8 and 4 of 40 (160)
    assert max((stop - start) * lengths[stop - 1] for start, stop in parts) == 80
    assert balanced_cuts(np.array([10] * 6), 2) == [(0, 3), (3, 6)]  # equal lengths: equal halves
    assert balanced_cuts(np.array([3]), 2) == [(0, 1)]
    assert sequential_cuts(lengths) == [(0, 7), (7, 8)]  # 7 x 12 + 40 = 124 against 8 x 40 = 320
    assert sequential_cuts(np.array([9, 10, 10, 10])) == [(0, 4)]  # a cut would save under a tenth: one call
    assert real_lengths(np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]])).tolist() == [2, 0, 4, 3]


def test_parts_are_trimmed_and_the_outputs_come_back_in_input_order():
    mask = (np.arange(10)[None, :] < np.array([3, 10, 2, 7, 5, 1])[:, None]).astype(np.int64)
    feed = {"input_ids": np.arange(60).reshape(6, 10), "attention_mask": mask, "flag": np.arange(6)}
    parts, order = by_length(feed, ("attention_mask", ("input_ids", "attention_mask")), parallel=2)
    assert [p["input_ids"].shape for p in parts] == [(4, 5), (2, 10)]
    assert order.tolist() == [5, 2, 0, 4, 3, 1]
    assert np.concatenate([p["flag"] for p in parts]).tolist() == order.tolist()  # row-wise inputs follow
    rows = np.concatenate([p["input_ids"][:, 0] for p in parts])
    assert in_input_order([rows], order)[0].tolist() == feed["input_ids"][:, 0].tolist()


@pytest.fixture(scope="module")
def classifier_batch(keyword_folder, tmp_path_factory):
    """A user's BERT classifier (save_pretrained folder), exported to ONNX, and a batch of texts of mixed length."""
    import infertune
    from infertune.passes.export import ExportOnnx
    from infertune.passes.registry import PassContext, apply
    from infertune.testing.folders import keyword_texts, write_jsonl

    tmp = tmp_path_factory.mktemp("ragged")
    texts, labels = keyword_texts(24, seed=5)
    texts = [t + " and then some more words" * (i % 5) for i, t in enumerate(texts)]
    model, dataset = infertune.resolve(str(keyword_folder), data=str(write_jsonl(tmp / "t.jsonl", texts, labels)))
    exported = apply(model, ExportOnnx(), PassContext(workdir=tmp, dataset=dataset)).model
    split = dataset.split("calibration")
    return exported, exported.inputs_for(split, np.arange(len(split)))


@pytest.mark.parametrize("backend, options", [("onnxruntime", {}), ("openvino", {}), ("openvino", {"split": 2}),
                                              ("openvino", {"split": 2, "shapes": "static"})])
def test_a_users_classifier_cut_by_length_keeps_its_class_scores(classifier_batch, backend, options):
    model, batch = classifier_batch
    mask, sequenced = length_axes(model.signature)
    assert mask == "attention_mask" and {"input_ids", "attention_mask"} <= set(sequenced)
    whole = load_session(model, backend, **options)
    cut = load_session(model, backend, by_length=True, **options)
    parts, _ = by_length(batch, cut._lengths, parallel=options.get("split", 0))
    assert len(parts) == 2
    assert all(p["input_ids"].shape[1] <= batch["input_ids"].shape[1] for p in parts)
    assert min(p["input_ids"].shape[1] for p in parts) < batch["input_ids"].shape[1]  # padding left out
    want = whole.run(batch)
    for _ in range(2):  # with static shapes, the second run may meet a compiled part
        got = cut.run(batch)
        for name in want:
            assert got[name].shape == want[name].shape
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)
    one = {name: array[:1] for name, array in batch.items()}
    np.testing.assert_allclose(cut.run(one)[model.signature.output_names[0]],
                               whole.run(one)[model.signature.output_names[0]], rtol=1e-4, atol=1e-4)


def test_a_mean_pooled_bert_split_by_length_matches_the_whole_batch():
    from infertune.testing.models import bert_data

    data = bert_data(n=40, seed=3)
    bert = load_model("infertune.testing.models:tiny_bert", data=data)
    whole = load_session(bert, "openvino")
    cut = load_session(bert, "openvino", split=2, by_length=True)
    parts, order = cut._parts(data)
    assert order is not None and len(parts) == 2
    for name, want in whole.run(data).items():
        np.testing.assert_allclose(cut.run(data)[name], want, rtol=1e-4, atol=1e-4)


def test_it_never_applies_where_the_numbers_could_depend_on_padding(tmp_path):
    """Per-token outputs (a tagger), or no attention mask (an LSTM): no cut, and the search does not offer it."""
    import torch

    from infertune.search.recipe import Recipe
    from infertune.search.space import needs_met, setting_variants
    from infertune.testing.models import lstm_tagger, token_tagger_onnx

    tagger = token_tagger_onnx(tmp_path / "tagger.onnx")
    lstm = tmp_path / "lstm.onnx"
    torch.onnx.export(lstm_tagger(), (torch.randn(1, 12, 16),), str(lstm), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    for path in (tagger, lstm):
        model = load_model(str(path))
        assert length_axes(model.signature) is None
        assert load_session(model, "onnxruntime", by_length=True)._lengths is None
        met = needs_met(model, has_calibration=True, has_training=False)
        assert "padded-sequences" not in met
        offered = setting_variants(Recipe(backend="openvino"), met, "throughput")
        assert offered and not any("by_length" in r.backend_options for r in offered)


def test_the_search_offers_it_for_throughput_on_padded_sequences_only(classifier_batch):
    from infertune.search.recipe import Recipe
    from infertune.search.space import needs_met, setting_variants

    model, _ = classifier_batch
    met = needs_met(model, has_calibration=True, has_training=False)
    assert "padded-sequences" in met
    for backend in ("onnxruntime", "openvino"):
        throughput = setting_variants(Recipe(backend=backend), met, "throughput")
        assert [r.backend_options for r in throughput if "by_length" in r.backend_options] == [{"by_length": True}]
        assert throughput[0].backend_options == {"by_length": True}  # made for throughput: tried first
        latency = setting_variants(Recipe(backend=backend), met, "latency")
        assert not any("by_length" in r.backend_options for r in latency)

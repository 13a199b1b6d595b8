"""The trial's padding check: a candidate's outputs on held-out texts padded to 16, 32, 64 and 128 tokens against
the baseline's at the same lengths (a runtime kernel chosen for one shape can move rows the mean never shows)."""

from infertune.backends import load_session
from infertune.search.trial import PADDED_LENGTHS, padded_outputs, padding_moves


def test_a_faithful_candidate_does_not_move_with_padding_and_a_moved_row_is_found(tmp_path):
    from infertune.data import Split
    from infertune.passes.export import export_onnx
    from infertune.resolver import load_model
    from infertune.testing.models import bert_data, mlp_data

    data = bert_data(40, seed=5)
    split = Split(name="heldout", inputs=data)
    model = load_model("infertune.testing.models:tiny_bert", data=bert_data())
    exported = export_onnx(model, tmp_path / "bert.onnx")
    reference = padded_outputs(load_session(model, "torch"), model, split)
    candidate = padded_outputs(load_session(exported, "onnxruntime"), exported, split)
    longest = data["attention_mask"][:32].sum(1).max()
    # samples of at most 16 tokens, then of at most 32, 64 (the tiny BERT takes up to 64 positions: at 128 the
    # check stops)
    assert set(reference) == {f"padded{n}" for n in PADDED_LENGTHS if n <= 64}
    assert all(v.shape[0] == 32 for v in reference.values()) and longest <= data["input_ids"].shape[1]
    assert padding_moves(candidate, reference) > 0.9999
    name = next(iter(candidate))
    moved = {**candidate, name: candidate[name].copy()}
    moved[name][5] = -moved[name][5]  # one row turned around at one length
    assert padding_moves(moved, reference) < -0.99
    assert padding_moves(candidate, {}) is None  # a baseline saved before the check
    mlp = load_model("infertune.testing.models:tiny_mlp", data=mlp_data())
    assert padded_outputs(load_session(mlp, "torch"), mlp, Split(name="heldout", inputs=mlp_data())) == {}  # no mask

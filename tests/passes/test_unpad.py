"""Padding removal: on models nobody here tuned for (a tiny BERT with mean pooling, a user's BERT classifier saved
with save_pretrained, an LSTM), the token-wise layers run on real tokens only, the outputs stay those of the
padded graph on every backend, and a model it cannot serve exactly is refused with the reason."""

import numpy as np
import pytest

from infertune.backends import load_session
from infertune.errors import UnsupportedModelError
from infertune.passes.export import ExportOnnx
from infertune.passes.fuse import OrtFusion
from infertune.passes.quantize.onnx_backend import Int8Dynamic
from infertune.passes.registry import PassContext, apply
from infertune.passes.unpad import Unpad


def _padded_batches():
    """The tiny BERT's token ids padded three ways: little, much, and not at all (one sentence)."""
    from infertune.testing.models import bert_data

    data = bert_data(24, seed=11)
    mask = data["attention_mask"]
    order = np.argsort(mask.sum(1), kind="stable")
    return [{k: v[order[:8]] for k, v in data.items()}, {k: v[order[::3]] for k, v in data.items()},
            {k: v[:1, :int(mask[0].sum())] for k, v in data.items()}]


def _matmul_rows(path, batch) -> list[int]:
    """How many rows each weight MatMul of the graph at `path` multiplies for `batch` (ONNX Runtime, every
    intermediate made an output)."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    weights = {i.name for i in proto.graph.initializer}
    outputs = [n.output[0] for n in proto.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    del proto.graph.output[:]
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in outputs)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return [int(np.prod(v.shape[:-1])) for v in session.run(None, batch)]


@pytest.mark.parametrize("bucket", [1, 8])
def test_token_wise_layers_run_on_real_tokens_and_outputs_stay_equal(bert_onnx, bert_dataset, tmp_path, bucket):
    """Every weight MatMul (attention projections included) multiplies the real tokens only, rounded up to the
    bucket and never past the padded size."""
    import onnx

    output = apply(bert_onnx, Unpad(bucket=bucket), PassContext(workdir=tmp_path, dataset=bert_dataset))
    assert "token-wise nodes run on real tokens only" in output.notes[0]
    ops = [node.op_type for node in onnx.load(str(output.model.onnx_path)).graph.node]
    assert ops.count("NonZero") == 1
    for batch in _padded_batches():
        real, padded = int(batch["attention_mask"].sum()), batch["input_ids"].size
        padded_rows, rows = _matmul_rows(bert_onnx.onnx_path, batch), _matmul_rows(output.model.onnx_path, batch)
        assert len(rows) == len(padded_rows) and all(r == padded for r in padded_rows)
        assert all(r == min(-(-real // bucket) * bucket, padded) for r in rows)
        for backend in ("onnxruntime", "openvino"):
            want = load_session(bert_onnx, backend).run(batch)
            for name, got in load_session(output.model, backend).run(batch).items():
                np.testing.assert_allclose(got, want[name], rtol=1e-4, atol=1e-5, err_msg=f"{backend} {name}")


def test_unpad_after_fusion_and_before_int8_keeps_the_budget(bert_onnx, bert_dataset, tmp_path):
    """Where the search inserts it on an ONNX Runtime leader: after the attention fusion (whose Attention node
    reads the padded layout), before dynamic int8 (which then quantizes the packed activations)."""
    ctx = PassContext(workdir=tmp_path, dataset=bert_dataset)
    fused = apply(bert_onnx, OrtFusion(), ctx).model
    unpadded = apply(fused, Unpad(), ctx).model
    def outputs(model):
        return [next(iter(load_session(model, "onnxruntime").run(b).values())) for b in _padded_batches()]

    plain_int8 = outputs(apply(fused, Int8Dynamic(), ctx).model)
    packed_int8 = outputs(apply(unpadded, Int8Dynamic(), ctx).model)
    for want, plain, packed in zip(outputs(fused), plain_int8, packed_int8):
        cos = np.sum(want * packed, 1) / (np.linalg.norm(want, axis=1) * np.linalg.norm(packed, axis=1))
        cos_plain = np.sum(want * plain, 1) / (np.linalg.norm(want, axis=1) * np.linalg.norm(plain, axis=1))
        assert cos.mean() > 0.99 and cos.mean() >= cos_plain.mean() - 0.01


def test_a_users_bert_classifier_keeps_its_class_scores(keyword_folder, tmp_path):
    """A BertForSequenceClassification folder (CLS pooler, then a classifier head): a different pooling, read at
    position 0 of the padded layout."""
    import infertune
    from infertune.testing.folders import keyword_texts, write_jsonl

    texts, labels = keyword_texts(48, seed=2)
    texts = [t + " and then some more words" * (i % 4) for i, t in enumerate(texts)]
    model, dataset = infertune.resolve(str(keyword_folder), data=str(write_jsonl(tmp_path / "t.jsonl", texts, labels)))
    ctx = PassContext(workdir=tmp_path, dataset=dataset)
    exported = apply(model, ExportOnnx(), ctx).model
    output = apply(exported, Unpad(), ctx)
    assert "token-wise nodes" in output.notes[0]
    split = dataset.split("calibration")
    batch = exported.inputs_for(split, np.arange(len(split)))
    assert batch["attention_mask"].sum() < batch["attention_mask"].size  # padded
    want = load_session(exported, "onnxruntime").run(batch)
    for name, got in load_session(output.model, "onnxruntime").run(batch).items():
        np.testing.assert_allclose(got, want[name], rtol=1e-4, atol=1e-5)


def test_a_model_without_an_attention_mask_is_refused_by_name(tmp_path):
    """An LSTM exported to ONNX: no input marks padding, so the pass says which input it looked for."""
    import torch

    from infertune.resolver import load_model
    from infertune.testing.models import lstm_tagger

    path = tmp_path / "tagger.onnx"
    torch.onnx.export(lstm_tagger(), (torch.randn(1, 12, 16),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    with pytest.raises(UnsupportedModelError, match="no input 'attention_mask' \\(its inputs: x\\); set mask_input"):
        apply(load_model(str(path)), Unpad(), PassContext(workdir=tmp_path))


def test_per_token_outputs_are_refused(tmp_path):
    """A token tagger's outputs at padded positions are the model's own numbers; packed, they would read zeros,
    so the pass refuses rather than change them."""
    from infertune.resolver import load_model
    from infertune.testing.models import token_tagger_onnx

    path = token_tagger_onnx(tmp_path / "tagger.onnx")
    with pytest.raises(UnsupportedModelError, match="its output tags holds a value per token"):
        apply(load_model(str(path)), Unpad(), PassContext(workdir=tmp_path))

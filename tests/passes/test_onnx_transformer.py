"""A transformer the user exported to ONNX (a small ViT and a small BERT, exported here with torch.onnx.export and
transformers' default attention, no infertune metadata): the attention blocks, head count and hidden size are
read from the graph, the search offers fusion, and the fusion pass says which blocks it fused."""

import numpy as np
import onnx
import pytest

import infertune
from infertune.model.onnx_graph import attention_facts
from infertune.passes.fuse import OrtFusion

# name -> (blocks, heads, hidden size) of the models built below
EXPECTED = {"vit": (2, 4, 64), "bert": (3, 3, 48)}


def _export(module, args, path, input_names, output_name, dynamic):
    import torch

    torch.onnx.export(module, args, str(path), input_names=input_names, output_names=[output_name],
                      dynamic_axes={**dynamic, output_name: {0: "batch"}}, opset_version=17, dynamo=False)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """User exports: ViTForImageClassification logits and BertModel token states, as plain torch wrappers."""
    import warnings

    import torch
    from transformers import BertConfig, BertModel, ViTConfig, ViTForImageClassification

    from infertune.quiet import quiet_third_party_logs

    quiet_third_party_logs()
    torch.manual_seed(0)
    where = tmp_path_factory.mktemp("user-onnx")

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model(pixel_values=pixel_values).logits

    class States(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    vit = ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
                                              num_attention_heads=4, intermediate_size=128, num_labels=5)).eval()
    bert = BertModel(BertConfig(vocab_size=200, hidden_size=48, num_hidden_layers=3, num_attention_heads=3,
                                intermediate_size=96, max_position_embeddings=64), add_pooling_layer=False).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about transformers' masking code
        _export(Logits(vit), (torch.randn(2, 3, 32, 32),), where / "vit.onnx", ["pixel_values"], "logits",
                {"pixel_values": {0: "batch"}})
        _export(States(bert), (torch.randint(1, 200, (2, 10)), torch.ones(2, 10, dtype=torch.long)),
                where / "bert.onnx", ["input_ids", "attention_mask"], "last_hidden_state",
                {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}})
    rng = np.random.default_rng(0)
    mask = np.ones((32, 10), np.int64)
    mask[::2, 6:] = 0  # half the rows padded
    data = {"vit": {"pixel_values": rng.standard_normal((32, 3, 32, 32)).astype(np.float32)},
            "bert": {"input_ids": rng.integers(1, 200, (32, 10)), "attention_mask": mask}}
    return {name: (where / f"{name}.onnx", data[name]) for name in EXPECTED}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_attention_blocks_heads_and_hidden_size_are_read_from_the_graph(exports, name):
    path, _ = exports[name]
    facts = attention_facts(onnx.load(str(path)).graph)
    blocks, heads, hidden = EXPECTED[name]
    print(f"\n{name}: {facts.describe()}")
    assert (facts.blocks, facts.num_heads, facts.hidden_size) == (blocks, heads, hidden)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_a_user_export_is_taken_for_a_transformer_and_offered_fusion(exports, name):
    from infertune.search.space import candidate_recipes

    path, _ = exports[name]
    model, _ = infertune.resolve(str(path))
    blocks, heads, hidden = EXPECTED[name]
    assert not onnx.load(str(path), load_external_data=False).metadata_props  # nothing says "transformer"
    assert model.meta["attention_blocks"] == blocks
    assert (model.meta["num_heads"], model.meta["hidden_size"]) == (heads, hidden)
    recipes = candidate_recipes(model, has_calibration=True, has_training=False)
    fused = [r.describe() for r in recipes if any(isinstance(p, OrtFusion) for p in r.passes)]
    assert fused, [r.describe() for r in recipes]
    print(f"\n{name}: candidates with fusion: {fused}")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_fusion_notes_say_which_attention_blocks_were_fused(exports, name, tmp_path):
    import onnxruntime as ort

    path, data = exports[name]
    blocks, heads, hidden = EXPECTED[name]
    fused, (output,) = infertune.apply_passes(str(path), [OrtFusion()], data=data, workdir=tmp_path)
    print(f"\n{name}: " + "; ".join(output.notes))
    assert output.notes[0].startswith(f"fused Attention x{blocks},")
    assert f"attention blocks fused: {blocks} of {blocks} found in the graph ({heads} heads, hidden size {hidden})" \
        in output.notes
    graph = onnx.load(str(fused.onnx_path)).graph
    assert sum(node.op_type == "Attention" for node in graph.node) == blocks
    assert not any(node.op_type == "Softmax" for node in graph.node)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, data)[0]
    got = ort.InferenceSession(str(fused.onnx_path), providers=["CPUExecutionProvider"]).run(None, data)[0]
    print(f"{name}: largest difference from the unfused graph {np.abs(got - want).max():.2e}")
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_torch_sdpa_nan_guard_is_removed_before_fusing(exports, tmp_path):
    """transformers' default attention exports Where(IsNaN(p), 0, p) after each Softmax, which ONNX Runtime's
    attention patterns do not cross: the rewrite removes it, and the outputs stay the same."""
    import onnxruntime as ort

    from infertune.passes.attention_graph import canonical_attention

    path, data = exports["bert"]
    assert sum(node.op_type == "IsNaN" for node in onnx.load(str(path)).graph.node) == 3
    changes = canonical_attention(path, tmp_path / "canonical.onnx")
    assert "removed 3 NaN guards after Softmax" in changes
    graph = onnx.load(str(tmp_path / "canonical.onnx")).graph
    assert not any(node.op_type == "IsNaN" for node in graph.node)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, data)[0]
    got = ort.InferenceSession(str(tmp_path / "canonical.onnx"), providers=["CPUExecutionProvider"]).run(None, data)[0]
    np.testing.assert_allclose(got, want, atol=1e-5)

"""NNCF int8 with attention left float (`Int8Nncf(float_attention=True)`), on models nobody tuned it for: a small
BERT exported to ONNX and a timm-style attention block (one Linear makes q, k and v); an MLP has no such matmul."""

import numpy as np
import pytest

from infertune.passes.quantize.openvino_backend import Int8Nncf, activation_matmuls, nncf_candidates
from infertune.passes.registry import PassContext, SearchFacts, apply

SHAPE_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Multiply", "Divide")


def _read(path):
    import openvino as ov

    return ov.Core().read_model(str(path))


def _quantized_inputs(ov_model, name: str) -> list[bool]:
    """For the op named `name`, whether each input comes from a FakeQuantize (through reshapes and scalings)."""
    op = next(o for o in ov_model.get_ops() if o.get_friendly_name() == name)
    found = []
    for value in op.input_values():
        node = value.get_node()
        while node.get_type_name() in SHAPE_OPS:
            node = node.input_value(0).get_node()
        found.append(node.get_type_name() == "FakeQuantize")
    return found


@pytest.fixture(scope="module")
def attention_block_onnx(tmp_path_factory):
    from infertune.passes.export import export_onnx
    from infertune.resolver import load_model

    data = {"x": np.random.default_rng(3).standard_normal((8, 10, 12)).astype(np.float32)}
    model = load_model("infertune.testing.models:fused_qkv_attention", data=data)
    return export_onnx(model, tmp_path_factory.mktemp("block") / "block.onnx")


def test_the_matmuls_of_two_activations_are_found_in_any_attention(bert_onnx, attention_block_onnx, mlp_onnx):
    found = activation_matmuls(_read(bert_onnx.onnx_path))
    assert len(found) == 4  # scores and context, in each of the 2 layers
    assert len(activation_matmuls(_read(attention_block_onnx.onnx_path))) == 2
    assert activation_matmuls(_read(mlp_onnx)) == []  # every matmul there has a weight


def test_float_attention_leaves_them_unquantized_and_stays_close(bert_onnx, bert_dataset, tmp_path):
    from infertune.backends import load_session
    from infertune.testing.models import bert_data

    names = activation_matmuls(_read(bert_onnx.onnx_path))
    inputs = bert_data(16, seed=9)
    reference = next(iter(load_session(bert_onnx, "onnxruntime").run(inputs).values()))
    built = {}
    for float_attention in (False, True):
        config = Int8Nncf(subset_size=32, preset="performance", float_attention=float_attention)
        built[float_attention] = apply(bert_onnx, config, PassContext(workdir=tmp_path / str(float_attention),
                                                                      dataset=bert_dataset))
    plain, kept = (_read(built[f].model.ir_path) for f in (False, True))
    assert any(any(_quantized_inputs(plain, name)) for name in names)  # NNCF's default quantizes attention
    assert not any(any(_quantized_inputs(kept, name)) for name in names)
    assert "4 matmuls of two activations left float" in built[True].notes[0]
    result = next(iter(load_session(built[True].model, "openvino").run(inputs).values()))
    a, b = reference.astype(np.float64), result.astype(np.float64)
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() >= 0.98


def test_the_search_tries_float_attention_where_int8_is_fast():
    def configs(isa):
        return nncf_candidates(SearchFacts(format="onnx", met=frozenset({"calibration"}), isa=frozenset(isa)))

    assert configs(("amx_int8",)) == (Int8Nncf(), Int8Nncf(preset="performance", float_attention=True))
    assert configs(("avx512_vnni",))[1:] == (Int8Nncf(preset="performance", float_attention=True),)
    assert configs(("avx2",)) == (Int8Nncf(),)

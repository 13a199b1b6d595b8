"""Quantization-aware training: the exported int8 graph runs on ONNX Runtime, holds QDQ int8 operators and
matches the fake-quant torch model it came from; training stops at its step budget and says how long it took."""

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from infertune.backends import load_session
from infertune.passes.quantize.qat import Qat, calibrate, fake_quantize, freeze_ranges
from infertune.passes.registry import PassContext, apply, int8_saturates


def _fake_quant_outputs(model, dataset, config, inputs):
    """The fake-quant torch model the pass trains, untrained (steps=0 is not allowed, so rebuilt here)."""
    import copy
    import dataclasses

    module = copy.deepcopy(model.module)
    fake_quantize(module, activations=config.activations, activation_type=config.activation_type,
                  reduce_range=int8_saturates())  # as the pass does by default on this CPU
    quantized = dataclasses.replace(model, module=module)
    calibrate(quantized, dataset.split("calibration"))
    freeze_ranges(module)
    with torch.no_grad():
        return module(*[torch.from_numpy(inputs[n]) for n in model.signature.input_names]).numpy()


@pytest.mark.parametrize("activations", ["static", "dynamic"])
def test_qat_export_runs_on_onnx_runtime_and_matches_the_fake_quant_model(mlp_model, mlp_dataset, tmp_path,
                                                                           activations):
    config = Qat(activations=activations, steps=1, lr=1e-12)  # one step that moves nothing: same weights as above
    out = apply(mlp_model, config, PassContext(workdir=tmp_path, dataset=mlp_dataset))
    graph = onnx.load(str(out.model.onnx_path))
    ops = {node.op_type for node in graph.graph.node}
    assert ({"QuantizeLinear", "DequantizeLinear"} if activations == "static" else {"DynamicQuantizeLinear"}) <= ops
    inputs = {"input": mlp_dataset.split("calibration").inputs["input"][:32]}
    got = load_session(out.model, "onnxruntime").run(inputs)["output"]
    want = _fake_quant_outputs(mlp_model, mlp_dataset, config, inputs)
    cosine = np.sum(got * want, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cosine.min() > 0.999 and np.abs(got - want).max() < 0.05 * np.abs(want).max()
    assert out.details["export_check"]["output"]["min_cosine"] > 0.999


def test_qat_trains_within_its_step_budget_and_reports_the_time(mlp_model, mlp_dataset, tmp_path):
    out = apply(mlp_model, Qat(steps=3, lr=1e-4), PassContext(workdir=tmp_path, dataset=mlp_dataset))
    assert out.details["train_steps"] == 3 and out.details["train_seconds"] > 0
    assert "trained 3 steps" in out.notes[0] and "stopped by steps" in out.notes[0]


def test_qat_folds_batch_norm_and_exports_int8_convolutions(cnn_model, tmp_path):
    from infertune.data import Dataset, Split
    from infertune.data.dataset import file_splits

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    data = Dataset(name="images", kind="arrays",
                   splits=file_splits(Split(name="all", inputs={"input": x}, labels=rng.integers(0, 10, 64))))
    out = apply(cnn_model, Qat(steps=2), PassContext(workdir=tmp_path, dataset=data))
    graph = onnx.load(str(out.model.onnx_path))
    assert "BatchNormalization" not in {n.op_type for n in graph.graph.node}
    assert any("folded" in note for note in out.notes)
    got = load_session(out.model, "onnxruntime").run({"input": x[:4]})
    assert next(iter(got.values())).shape == (4, 10)


def test_qat_on_a_transformer_exports_a_runnable_int8_graph(bert_model, bert_dataset, tmp_path):
    out = apply(bert_model, Qat(steps=2, lr=1e-5), PassContext(workdir=tmp_path, dataset=bert_dataset))
    from infertune.testing.models import bert_data

    assert load_session(out.model, "onnxruntime").run(bert_data(4))["output"].shape == (4, 32)
    assert out.details["export_check"]["output"]["min_cosine"] > 0.99
    # as faithful to fp32 as the fake-quant model it came from, whether or not rounding flips set them apart
    trained = out.details["fidelity_after" if out.details["trained_weights_kept"] else "fidelity_before"]
    assert out.details["fidelity_exported"] >= trained - Qat().tolerance
    # q, k, v, the FFN and the attention output feed float operators: their MatMuls run integer, float out; so
    # does each layer's query-times-key MatMul, whose two operands are quantized too
    linears = sum(isinstance(m, torch.nn.Linear) for m in bert_model.module.modules())
    layers = sum(name.endswith(".query") for name, _ in bert_model.module.named_modules())
    assert _optimized_ops(out.model.onnx_path, tmp_path)["MatMulIntegerToFloat"] == linears + layers


def _optimized_ops(path, tmp_path) -> collections.Counter:
    """Operator counts of the graph ONNX Runtime runs."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)


def test_qat_shares_one_input_quantizer_per_tensor_and_quantizes_attention_operands(bert_model, bert_dataset,
                                                                                     tmp_path):
    """q, k and v read one hidden state: one range for it, as the runtime quantizes it once. Query and key are
    both operands of a matmul: their outputs are fake-quantized (symmetric int8); value meets the softmax, and
    stays float. With attention=False only the sharing remains, and the attention matmuls run float."""
    out = apply(bert_model, Qat(steps=1, lr=1e-12), PassContext(workdir=tmp_path / "on", dataset=bert_dataset))
    layers = sum(name.endswith(".query") for name, _ in bert_model.module.named_modules())
    groups = out.details["shared_input_quantizers"]
    assert len(groups) == layers and all(len(g) == 3 for g in groups), groups
    assert all({name.rsplit(".", 1)[1] for name in g} == {"query", "key", "value"} for g in groups), groups
    operands = out.details["quantized_operands"]
    assert sorted(name.rsplit(".", 1)[1] for name in operands) == ["key"] * layers + ["query"] * layers, operands
    from infertune.passes.quantize.qat_onnx import _Graph

    graph = _Graph(onnx.load(str(out.model.onnx_path)))  # its values hold initializers and Constant outputs
    outputs = [n for n in graph.graph.node if n.op_type == "QuantizeLinear" and "output_quant" in n.name]
    assert len(outputs) == 2 * layers, [n.name for n in outputs]  # the query and key outputs
    zeros = [graph.values[n.input[2]] for n in outputs]
    assert all(z.dtype == np.int8 and z.item() == 0 for z in zeros), zeros  # symmetric int8

    plain = apply(bert_model, Qat(steps=1, lr=1e-12, attention=False),
                  PassContext(workdir=tmp_path / "off", dataset=bert_dataset))
    assert plain.details["quantized_operands"] == [] and len(plain.details["shared_input_quantizers"]) == layers
    linears = sum(isinstance(m, torch.nn.Linear) for m in bert_model.module.modules())
    assert _optimized_ops(plain.model.onnx_path, tmp_path)["MatMulIntegerToFloat"] == linears


def test_an_export_that_is_not_the_fake_quant_model_and_less_faithful_is_refused(bert_model, bert_dataset, tmp_path,
                                                                                  monkeypatch):
    """The gate itself: a graph whose outputs moved away from the fake-quant model, and from fp32, fails the pass."""
    from infertune.errors import PassError
    from infertune.passes.quantize import qat as qat_module

    real = qat_module.export_int8

    def broken(model, ctx, config, reduce_range):  # the real export, then its weights scaled: a wrong graph
        path, check, calibrated = real(model, ctx, config, reduce_range)
        graph = onnx.load(str(path))
        for init in graph.graph.initializer:
            if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) == 1:
                init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) * 3 + 1, init.name))
        onnx.save(graph, str(path))
        return path, {"output": {"max_abs_diff": 1.0, "min_cosine": 0.5}}, calibrated

    monkeypatch.setattr(qat_module, "export_int8", broken)
    with pytest.raises(PassError, match="is not the fake-quant model"):
        apply(bert_model, Qat(steps=2), PassContext(workdir=tmp_path, dataset=bert_dataset))


def test_qat_finds_attention_operands_through_a_fused_qkv_projection_and_shares_no_reused_layer(tmp_path):
    """A model the rule was not written from: q, k and v are chunks of one Linear's output, and a Linear applied
    twice reads two tensors, so it keeps a quantizer of its own."""
    from infertune.data import Dataset, Split
    from infertune.data.dataset import file_splits
    from infertune.resolver import load_model

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 10, 12)).astype(np.float32)
    model = load_model("infertune.testing.models:fused_qkv_attention", data={"x": x[:2]})
    data = Dataset(name="tokens", kind="arrays",
                   splits=file_splits(Split(name="all", inputs={"x": x}, labels=rng.integers(0, 4, 64))))
    out = apply(model, Qat(steps=1, lr=1e-12), PassContext(workdir=tmp_path, dataset=data))
    assert out.details["quantized_operands"] == ["qkv"]
    assert out.details["shared_input_quantizers"] == []
    assert load_session(out.model, "openvino").run({"x": x[:4]})["output"].shape == (4, 4)

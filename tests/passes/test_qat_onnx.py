"""QAT's int8 export is laid out as ONNX Runtime's int8 kernels take it: in the graph ONNX Runtime runs (saved with
`optimized_model_filepath`) every quantized layer is an integer kernel (QLinearConv / QLinearMatMul / QGemm, or
MatMulIntegerToFloat where a MatMul's output feeds float operators), as many as in the post-training int8-static
graph of the same model, its weights are stored in int8, and its outputs still match the fake-quant model. Models
here are built in the test (none of them is known to the code), plus digits-cnn."""

import collections
import copy
import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from infertune.backends import load_session
from infertune.data import Dataset, Split
from infertune.data.dataset import file_splits
from infertune.passes.export import export_onnx
from infertune.passes.quantize.onnx_backend import Int8Static
from infertune.passes.quantize.qat import Qat, _fold_batchnorm, calibrate, fake_quantize, freeze_ranges
from infertune.passes.registry import PassContext, apply, int8_saturates

INT8_KERNELS = {"QLinearConv", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat"}
DYNAMIC_KERNELS = {"ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}
FLOAT_LAYERS = {"Conv", "FusedConv", "NchwcConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm"}


class ResidualCnn(nn.Module):
    """(N, 1, 8, 8) -> 10: conv-BN-ReLU, a residual conv, a strided conv-ReLU-MaxPool, a linear head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.inner = nn.Conv2d(32, 32, 3, padding=1)
        self.down = nn.Sequential(nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 2 * 2, 10))

    def forward(self, input):
        x = self.stem(input)
        return self.head(self.down(torch.relu(x + self.inner(x))))


class GeluStack(nn.Module):
    """(N, 16) -> 10 through 4 tokens of 4 features: Linear-GELU-LayerNorm blocks (MatMul in ONNX), then a head."""

    def __init__(self, width: int = 128):
        super().__init__()
        torch.manual_seed(2)
        self.blocks = nn.Sequential(nn.Linear(4, width), nn.GELU(), nn.LayerNorm(width), nn.Linear(width, width),
                                    nn.GELU(), nn.Linear(width, width), nn.ReLU())
        self.head = nn.Linear(4 * width, 10)

    def forward(self, input):
        return self.head(self.blocks(input.reshape(-1, 4, 4)).flatten(1))


def _image_dataset():
    rng = np.random.default_rng(0)
    images = Split(name="all", inputs={"input": rng.random((96, 1, 8, 8), np.float32)},
                   labels=rng.integers(0, 10, 96))
    return Dataset(name="images", kind="arrays", splits=file_splits(images))


def _case(name, mlp_model, mlp_dataset, cnn_model):
    if name == "residual-cnn":
        return dataclasses.replace(cnn_model, module=ResidualCnn().eval(), name=name), _image_dataset()
    return dataclasses.replace(mlp_model, module=GeluStack().eval(), name=name), mlp_dataset


def _ort_graph(path, tmp_path) -> collections.Counter:
    """Operator counts of the graph ONNX Runtime runs (graph optimizations as far as hardware-neutral ones go)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}.optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)


def _layers(module) -> int:
    return sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in module.modules())


def _fake_quant_outputs(model, dataset, inputs):
    """The untrained fake-quant model the pass starts from (batch norm folded as the pass folds it)."""
    module = copy.deepcopy(model.module).eval()
    module = _fold_batchnorm(module) or module
    fake_quantize(module, reduce_range=int8_saturates())  # as the pass does by default on this CPU
    calibrate(dataclasses.replace(model, module=module), dataset.split("calibration"))
    freeze_ranges(module)
    with torch.no_grad():
        return module(torch.from_numpy(inputs)).numpy()


def _assert_int8_layout(model, dataset, out, tmp_path) -> collections.Counter:
    ops = _ort_graph(out.model.onnx_path, tmp_path)
    kernels = {op: n for op, n in ops.items() if op in INT8_KERNELS}
    assert sum(kernels.values()) == _layers(model.module) and not FLOAT_LAYERS & set(ops), ops
    fp32 = export_onnx(model, tmp_path / "fp32.onnx")
    static = apply(fp32, Int8Static(), PassContext(workdir=tmp_path, dataset=dataset))
    assert sum(n for op, n in _ort_graph(static.model.onnx_path, tmp_path).items() if op in INT8_KERNELS) == \
        sum(kernels.values())
    weights = [i for i in onnx.load(str(out.model.onnx_path)).graph.initializer if len(i.dims) >= 2]
    assert weights and all(i.data_type == onnx.TensorProto.INT8 for i in weights)
    size = out.model.onnx_path.stat().st_size  # int8 weights plus the graph: a quarter of fp32 and a little
    assert size <= static.model.onnx_path.stat().st_size and size < 0.35 * (tmp_path / "fp32.onnx").stat().st_size
    return ops


# calibrated: Conv and Gemm outputs that reach no quantized layer through ReLU, MaxPool or reshapes alone (a
# residual branch, the logits); the others take the next layer's trained input range, and a MatMul's output
# feeding float operators (the bias Add, GELU) stays float: the gelu stack runs three MatMulIntegerToFloat
@pytest.mark.parametrize("name, calibrated, float_out", [("residual-cnn", "3 of 4", 0), ("gelu-stack", "1 of 4", 3)])
def test_qat_static_export_runs_int8_kernels_like_int8_static(name, calibrated, float_out, mlp_model, mlp_dataset,
                                                              cnn_model, tmp_path):
    model, dataset = _case(name, mlp_model, mlp_dataset, cnn_model)
    out = apply(model, Qat(steps=1, lr=1e-12), PassContext(workdir=tmp_path, dataset=dataset))
    assert _assert_int8_layout(model, dataset, out, tmp_path)["MatMulIntegerToFloat"] == float_out
    assert any(note.startswith(f"{calibrated} quantized layer outputs") for note in out.notes), out.notes
    x = dataset.split("calibration").inputs["input"][:32]
    got = next(iter(load_session(out.model, "onnxruntime").run({"input": x}).values()))
    want = _fake_quant_outputs(model, dataset, x)
    cosine = np.sum(got * want, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cosine.min() > 0.999 and np.abs(got - want).max() < 0.05 * np.abs(want).max()
    assert next(iter(out.details["export_check"].values()))["min_cosine"] > 0.999


@pytest.mark.parametrize("name", ["residual-cnn", "gelu-stack"])
def test_qat_dynamic_export_runs_integer_kernels(name, mlp_model, mlp_dataset, cnn_model, tmp_path):
    model, dataset = _case(name, mlp_model, mlp_dataset, cnn_model)
    out = apply(model, Qat(activations="dynamic", steps=1, lr=1e-12), PassContext(workdir=tmp_path, dataset=dataset))
    ops = _ort_graph(out.model.onnx_path, tmp_path)
    assert sum(n for op, n in ops.items() if op in DYNAMIC_KERNELS) == _layers(model.module)
    assert not FLOAT_LAYERS & set(ops), ops


def test_qat_on_digits_cnn_runs_qlinearconv_and_qgemm_with_int8_weights(tmp_path):
    from infertune.data import load_dataset
    from infertune.resolver import load_model

    model, dataset = load_model("digits-cnn"), load_dataset("digits")
    out = apply(model, Qat(steps=2), PassContext(workdir=tmp_path, dataset=dataset))
    ops = _assert_int8_layout(model, dataset, out, tmp_path)
    assert ops["QuantizeLinear"] == ops["DequantizeLinear"] == 1, ops  # int8 from the pixels to the logits
    assert out.details["export_check"]["logits"]["min_cosine"] > 0.999
    assert any(note.startswith("1 of 5 quantized layer outputs") for note in out.notes)  # the logits only

"""Any `.onnx` file: its signature read from the graph."""

from __future__ import annotations

from pathlib import Path

from infertune.errors import UnsupportedModelError
from infertune.model.base import Model
from infertune.model.signature import Signature, TensorSpec, guess_task

_ONNX_TO_NUMPY = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                  10: "float16", 11: "float64", 16: "bfloat16"}


def _spec(value_info) -> TensorSpec:
    tensor_type = value_info.type.tensor_type
    dtype = _ONNX_TO_NUMPY.get(tensor_type.elem_type)
    if dtype is None:
        raise UnsupportedModelError(f"ONNX tensor '{value_info.name}' has element type {tensor_type.elem_type}, "
                                    f"which infertune does not handle")
    dims: list[int | str] = []
    for i, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or ("batch" if i == 0 else f"dim{i}"))
    return TensorSpec(value_info.name, dtype, tuple(dims))


def read_signature(path: Path) -> Signature:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise UnsupportedModelError(f"'{path}' is not a readable ONNX model ({e}): export it with "
                                    f"torch.onnx.export or check the file") from e
    initializers = {init.name for init in proto.graph.initializer}
    inputs = tuple(_spec(v) for v in proto.graph.input if v.name not in initializers)
    outputs = tuple(_spec(v) for v in proto.graph.output)
    return Signature(inputs=inputs, outputs=outputs)


def load(path: str | Path) -> Model:
    path = Path(path)
    if not path.is_file():
        raise UnsupportedModelError(f"model file '{path}' not found: check the path")
    signature = read_signature(path)
    return Model(name=path.stem, source=str(path), signature=signature, task=guess_task(signature),
                 onnx_path=path.resolve())


INT8_OPS = {"MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul", "QAttention", "QuantizeLinear",
            "DequantizeLinear", "QGemm", "ConvInteger", "QLinearConv", "DynamicQuantizeMatMul"}


def weight_precision(path: str | Path) -> str:
    """What the graph's weights mostly are: int4 (MatMulNBits), int8, fp16 or fp32, from its initializers."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    if "MatMulNBits" in ops:
        return "int4"
    if ops & INT8_OPS:
        return "int8"
    elements: dict[int, int] = {}
    for init in graph.initializer:
        count = 1
        for dim in init.dims:
            count *= dim
        elements[init.data_type] = elements.get(init.data_type, 0) + count
    if not elements:
        return "fp32"
    dominant = max(elements, key=elements.get)
    return {1: "fp32", 10: "fp16", 16: "bf16", 3: "int8", 2: "int8"}.get(dominant, _ONNX_TO_NUMPY.get(dominant, "?"))

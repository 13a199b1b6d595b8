"""Any `.onnx` file, or a folder holding one with its tokenizer (as Optimum exports it): the signature and the
attention blocks read from the graph, the task and labels from the folder's config.json when there is one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from infertune.errors import UnsupportedModelError
from infertune.model.base import Model
from infertune.model.onnx_graph import attention_facts
from infertune.model.signature import Signature, TensorSpec, guess_task
from infertune.model.spec import ModelSpec

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
            dims.append("batch" if i == 0 else dim.dim_param or f"dim{i}")  # exporters name the batch axis apart
    return TensorSpec(value_info.name, dtype, tuple(dims))


def _read(path: Path):
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise UnsupportedModelError(f"'{path}' is not a readable ONNX model ({e}): export it with "
                                    f"torch.onnx.export or check the file") from e


def _signature(proto) -> Signature:
    initializers = {init.name for init in proto.graph.initializer}
    inputs = tuple(_spec(v) for v in proto.graph.input if v.name not in initializers)
    outputs = tuple(_spec(v) for v in proto.graph.output)
    return Signature(inputs=inputs, outputs=outputs)


def read_signature(path: Path) -> Signature:
    return _signature(_read(path))


def load(path: str | Path, spec: ModelSpec | None = None) -> Model:
    """An `.onnx` file; `spec.task`, `spec.num_heads`, `spec.hidden_size` override what the graph suggests."""
    path = Path(path)
    spec = spec or ModelSpec(str(path))
    if not path.is_file():
        raise UnsupportedModelError(f"model file '{path}' not found: check the path")
    proto = _read(path)
    signature = _signature(proto)
    facts = attention_facts(proto.graph)
    meta: dict = {}
    if facts.blocks:
        meta.update(attention_blocks=facts.blocks, attention=facts.describe())
    heads, hidden = spec.num_heads or facts.num_heads, spec.hidden_size or facts.hidden_size
    if heads and hidden:
        meta.update(num_heads=heads, hidden_size=hidden)
    return Model(name=path.stem, spec=spec, signature=signature, task=spec.task or guess_task(signature),
                 onnx_path=path.resolve(), meta=meta)


def is_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*.onnx"))


def load_folder(folder: Path, spec: ModelSpec) -> Model:
    """A folder with an ONNX model (model.onnx, or its only .onnx file), and, as Optimum exports it, a config.json
    (task, labels) and tokenizer files (so the model takes text)."""
    from infertune.model.text import TOKEN_INPUTS, folder_encoder, has_tokenizer

    files = sorted(folder.glob("*.onnx"))
    chosen = folder / "model.onnx" if (folder / "model.onnx").is_file() else files[0] if len(files) == 1 else None
    if chosen is None:
        raise UnsupportedModelError(f"'{folder}' holds several ONNX files ({', '.join(f.name for f in files)}) and "
                                    f"no model.onnx: pass the path of the one to use")
    model = load(chosen, spec)
    config = _config(folder)
    task, labels = model.task, None
    arch = (config.get("architectures") or [""])[0]
    if spec.task is None and arch.endswith(("ForSequenceClassification", "ForImageClassification")):
        task = "classification"
    elif spec.task is None and arch.endswith("ForTokenClassification"):
        task = "token-classification"
    if task in ("classification", "token-classification") and config.get("id2label"):
        id2label = config["id2label"]
        labels = tuple(str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(len(id2label)))
    encode = None
    names = tuple(model.signature.input_names)
    if has_tokenizer(folder) and names and all(name in TOKEN_INPUTS for name in names):
        positions = config.get("max_position_embeddings")
        encode = folder_encoder(folder, inputs=names, cap=positions if isinstance(positions, int) else None)
    meta = dict(model.meta)
    heads, hidden = config.get("num_attention_heads"), config.get("hidden_size")
    if "num_heads" not in meta and isinstance(heads, int) and isinstance(hidden, int):
        meta.update(num_heads=heads, hidden_size=hidden)
    return dataclasses.replace(model, name=folder.resolve().name, task=task, labels=labels, encode_texts=encode,
                               meta=meta)


def _config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UnsupportedModelError(f"'{path}' is not valid JSON ({e}): fix or remove it") from e


def with_artifact(model: Model, path: str | Path) -> Model:
    """The same model (name, spec, task, labels, tokenizer) backed by another file: an ONNX graph, with that
    graph's own input and output dtypes (an fp16 pass without kept float32 I/O changes them), or an OpenVINO
    IR (.xml), which keeps the model's signature."""
    path = Path(path).resolve()
    if path.suffix == ".xml":
        return dataclasses.replace(model, module=None, onnx_path=None, ir_path=path)
    graph = read_signature(path)
    by_name = {spec.name: spec for spec in (*graph.inputs, *graph.outputs)}

    def own(specs):
        return tuple(dataclasses.replace(s, dtype=by_name[s.name].dtype) if s.name in by_name else s for s in specs)

    signature = dataclasses.replace(model.signature, inputs=own(model.signature.inputs),
                                    outputs=own(model.signature.outputs))
    return dataclasses.replace(model, module=None, onnx_path=path, ir_path=None, signature=signature)


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

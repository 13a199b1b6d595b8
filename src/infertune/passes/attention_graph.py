"""Rewrites that put a user's exported attention in the form ONNX Runtime's transformer optimizer fuses. They
change no result beyond float rounding (the fusion pass validates the outputs afterwards):

- Dropout nodes (no-ops at inference) are removed;
- the NaN guard torch's scaled_dot_product_attention exports after its Softmax (`Where(IsNaN(p), 0, p)`, which
  differs from `p` only on a row whose every key is masked) is removed;
- a scale applied after Q x K^T as a Mul by c becomes a Div by 1/c (transformers 5 scales with Mul);
- scales applied to Q and to K before the MatMul (what torch's scaled_dot_product_attention exports) move after
  it, as one Div;
- reshapes whose output shape equals their input shape (symbolic shape inference) are removed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infertune.model.onnx_graph import GraphIndex, score_matmul


def canonical_attention(source: Path, target: Path) -> list[str]:
    """Write `source` with the rewrites above to `target`; returns what changed, in plain words."""
    import onnx
    from onnxruntime.transformers.fusion_utils import FusionUtils
    from onnxruntime.transformers.onnx_model import OnnxModel

    from infertune.passes.onnx_utils import save_onnx

    model = onnx.load(str(source))
    dropped = _drop_dropout(model.graph)
    guards = _drop_nan_guards(model.graph)
    rescaled = _rescale(model.graph)
    wrapped = OnnxModel(model)
    before = len(model.graph.node)
    FusionUtils(wrapped).remove_useless_reshape_nodes()
    wrapped.prune_graph()
    reshapes = max(0, before - len(wrapped.model.graph.node))
    save_onnx(wrapped.model, target)
    changes = []
    if dropped:
        changes.append(f"removed {dropped} Dropout")
    if guards:
        changes.append(f"removed {guards} NaN guard{'s' if guards != 1 else ''} after Softmax")
    if rescaled:
        changes.append(f"moved {rescaled} attention scale{'s' if rescaled != 1 else ''} to a Div after Q x K^T")
    if reshapes:
        changes.append(f"removed {reshapes} no-op Reshape")
    return changes


def _drop_dropout(graph) -> int:
    outputs = {o.name for o in graph.output}
    count = 0
    for node in list(graph.node):
        if node.op_type != "Dropout" or node.output[0] in outputs:
            continue
        _bypass(graph, node, node.input[0])
        count += 1
    return count


def _bypass(graph, node, source: str) -> None:
    """Every consumer of `node`'s output reads `source` instead, and `node` is removed."""
    for other in graph.node:
        for i, name in enumerate(other.input):
            if name == node.output[0]:
                other.input[i] = source
    graph.node.remove(node)


def _drop_nan_guards(graph) -> int:
    """`Where(IsNaN(p), 0, p)` over a Softmax output `p` -> `p`: ONNX Runtime's attention patterns end at the
    Softmax."""
    index = GraphIndex(graph)
    outputs = {o.name for o in graph.output}
    count = 0
    for node in list(graph.node):
        if node.op_type != "Where" or len(node.input) != 3 or node.output[0] in outputs:
            continue
        condition, _, probabilities = (index.producer.get(name) for name in node.input)
        value = index.constant(node.input[1])
        if not (condition is not None and condition.op_type == "IsNaN" and probabilities is not None
                and probabilities.op_type == "Softmax" and condition.input[0] == node.input[2]
                and value is not None and not np.any(value)):
            continue
        _bypass(graph, node, node.input[2])
        count += 1
    return count


def _rescale(graph) -> int:
    from onnx import helper, numpy_helper

    count = 0
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        index = GraphIndex(graph)
        qk = score_matmul(index, softmax)
        if qk is None:
            continue
        after = index.consumers.get(qk.output[0], [])
        if len(after) == 1 and after[0].op_type == "Mul":
            mul = after[0]
            other = [name for name in mul.input if name != qk.output[0]]
            scale = index.scalar(other[0]) if len(other) == 1 else None
            if scale:
                name = f"{mul.name or qk.output[0]}_inverse_scale"
                graph.initializer.append(numpy_helper.from_array(np.array(1.0 / scale, np.float32), name))
                mul.op_type = "Div"
                mul.input[:] = [qk.output[0], name]
                count += 1
            continue
        muls = [index.producer.get(name) for name in qk.input]
        if not all(m is not None and m.op_type == "Mul" and len(index.consumers.get(m.output[0], [])) == 1
                   for m in muls):
            continue
        scales, sources = [], []
        for mul in muls:
            values = [index.scalar(name) for name in mul.input]
            constant = [i for i, v in enumerate(values) if v is not None]
            if len(constant) != 1:
                break
            scales.append(values[constant[0]])
            sources.append(mul.input[1 - constant[0]])
        else:
            out = qk.output[0]
            name = f"{qk.name or out}_inverse_scale"
            graph.initializer.append(numpy_helper.from_array(np.array(1.0 / (scales[0] * scales[1]), np.float32), name))
            qk.input[:] = sources
            qk.output[0] = out + "_unscaled"
            position = list(graph.node).index(qk)
            graph.node.insert(position + 1, helper.make_node("Div", [qk.output[0], name], [out],
                                                            name=f"{qk.name or out}_scale"))
            for mul in muls:
                graph.node.remove(mul)
            count += 1
    return count

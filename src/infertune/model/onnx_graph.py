"""Facts read from an ONNX graph itself: its attention blocks, their head count and hidden size. A user's own
export carries no metadata saying it is a transformer; the graph says so."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

# ops a walk from Softmax back to the Q*K^T MatMul may cross (scale, mask, casts), and from that MatMul back to
# the reshape that splits the heads
_SCORE_OPS = ("Add", "Mul", "Div", "Where", "Cast", "Sub")
_HEAD_OPS = ("Transpose", "Mul", "Div")


@dataclass(frozen=True)
class AttentionFacts:
    blocks: int                # Softmax nodes over Q*K^T scores
    num_heads: int | None      # the most common figure over the blocks, None where the graph does not say
    hidden_size: int | None

    def describe(self) -> str:
        if not self.blocks:
            return "no attention blocks found in the graph"
        shape = (f"{self.num_heads} heads, hidden size {self.hidden_size}" if self.num_heads and self.hidden_size
                 else "head count not readable from the graph: pass --num-heads and --hidden-size")
        return f"{self.blocks} attention block{'s' if self.blocks != 1 else ''} in the graph ({shape})"


class GraphIndex:
    """Producers, constants and consumers of a graph's values, for walking it."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.graph = graph
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.constants = {init.name: init for init in graph.initializer}
        self._arrays: dict[str, np.ndarray] = {}
        self._numpy_helper = numpy_helper
        for node in graph.node:
            if node.op_type == "Constant":
                for attribute in node.attribute:
                    if attribute.name == "value":
                        self._arrays[node.output[0]] = numpy_helper.to_array(attribute.t)

    def constant(self, name: str, depth: int = 3) -> np.ndarray | None:
        """The value of `name` when it is an initializer or a Constant, seen through Identity, Cast, Unsqueeze."""
        if name in self._arrays:
            return self._arrays[name]
        if name in self.constants:
            self._arrays[name] = self._numpy_helper.to_array(self.constants[name])
            return self._arrays[name]
        node = self.producer.get(name)
        if node is None or depth == 0 or node.op_type not in ("Identity", "Cast", "Unsqueeze"):
            return None
        value = self.constant(node.input[0], depth - 1)
        return None if value is None else np.asarray(value).reshape(-1) if node.op_type == "Unsqueeze" else value

    def is_activation(self, name: str) -> bool:
        return bool(name) and self.constant(name) is None

    def scalar(self, name: str) -> float | None:
        value = self.constant(name)
        if value is None or np.asarray(value).size != 1:
            return None
        return float(np.asarray(value).reshape(-1)[0])


def score_matmul(index: GraphIndex, softmax):
    """The MatMul of two activations (Q x K^T) that a Softmax normalises, or None when it is not attention."""
    name = softmax.input[0]
    for _ in range(5):
        node = index.producer.get(name)
        if node is None:
            return None
        if node.op_type == "MatMul" and all(index.is_activation(i) for i in node.input):
            return node
        if node.op_type not in _SCORE_OPS:
            return None
        name = next((i for i in node.input if index.is_activation(i)), None)
        if name is None:
            return None
    return None


def _heads_of(index: GraphIndex, qk) -> tuple[int | None, int | None]:
    """(heads, hidden size) from the reshape that splits Q into heads, and the width of the Q projection."""
    name, reshape = qk.input[0], None
    for _ in range(4):
        node = index.producer.get(name)
        if node is None:
            break
        if node.op_type == "Reshape":
            reshape = node
            break
        if node.op_type not in _HEAD_OPS:
            break
        name = node.input[0]
    if reshape is None:
        return None, None
    heads = head_size = hidden = None
    shape = index.constant(reshape.input[1])
    if shape is None and index.producer.get(reshape.input[1]) is not None \
            and index.producer[reshape.input[1]].op_type == "Concat":
        parts = [index.constant(i) for i in index.producer[reshape.input[1]].input]
        shape = [int(np.asarray(p).reshape(-1)[0]) if p is not None and np.asarray(p).size == 1 else -1 for p in parts]
    if shape is not None and len(shape) == 4:
        heads = int(shape[2]) if int(shape[2]) > 0 else None  # transformers 5 writes -1 here
        head_size = int(shape[3]) if int(shape[3]) > 0 else None
    name = reshape.input[0]
    for _ in range(3):  # through the bias Add to the projection's weight
        node = index.producer.get(name)
        if node is None:
            break
        if node.op_type in ("MatMul", "Gemm"):
            weight = index.constant(node.input[1]) if len(node.input) > 1 else None
            if weight is not None and np.asarray(weight).ndim == 2:
                transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
                hidden = int(weight.shape[0] if transposed else weight.shape[1])
            break
        if node.op_type != "Add":
            break
        name = next((i for i in node.input if index.is_activation(i)), None)
        if name is None:
            break
    if heads is None and head_size and hidden and hidden % head_size == 0:
        heads = hidden // head_size
    if hidden is None and heads and head_size:
        hidden = heads * head_size
    return heads, hidden


def attention_facts(graph) -> AttentionFacts:
    """The attention blocks of a graph (an `onnx.GraphProto`), and their head count and hidden size."""
    index = GraphIndex(graph)
    shapes = []
    for node in graph.node:
        if node.op_type == "Softmax":
            qk = score_matmul(index, node)
            if qk is not None:
                shapes.append(_heads_of(index, qk))
    known = Counter(shape for shape in shapes if shape[0] and shape[1])
    heads, hidden = known.most_common(1)[0][0] if known else (None, None)
    return AttentionFacts(blocks=len(shapes), num_heads=heads, hidden_size=hidden)

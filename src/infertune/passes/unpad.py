"""Padding removal for text encoders: the token-wise parts of the graph (projections, feed-forward, GELU,
LayerNorm, residual adds) run on the real tokens of a batch only, and only attention and pooling see the padded
layout. A batch of sentences padded to its longest spends much of its matmul work on padding: batch 32 of
consecutive held-out sentences for MiniLM is 2.1x the real tokens, even similar lengths batched together 1.3x.
FasterTransformer's "effective transformer" and BetterTransformer's nested tensors do the same inside their own
kernels; here it is a rewrite of the ONNX graph with standard operators, so every ONNX backend and every pass after
it (int8, NNCF) runs it.

How: symbolic shape inference finds the tensors laid out [batch, sequence, ...] on the attention mask's own axes.
A node is token-wise when it maps each token to itself (elementwise with weights that do not vary along batch
or sequence, a MatMul by a weight matrix, a normalization over the last axis). Maximal regions of token-wise nodes
take their token inputs packed ([1, real tokens, ...], gathered where the mask is set) and keep their outputs
packed; any other consumer (a Reshape into heads, a Shape, the pooling) reads them unpacked, with zeros at the
padded positions. The outputs at real tokens are the same numbers: rows are computed alone either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infertune.errors import ExportError, UnsupportedModelError
from infertune.passes.onnx_utils import as_onnx, cosine_rows, require_onnx, run_onnx, sample_batches, save_onnx
from infertune.passes.registry import Checked, param, PassContext, PassOutput, register

UNARY = {"Abs", "BiasGelu", "Cast", "Dropout", "Elu", "Erf", "Exp", "FastGelu", "Gelu", "HardSigmoid", "HardSwish",
         "Identity", "LeakyRelu", "Log", "Mish", "Neg", "QuickGelu", "Reciprocal", "Relu", "Selu", "Sigmoid",
         "Softplus", "Sqrt", "Tanh"}  # one token in, the same token out; extra inputs must be constants
BINARY = {"Add", "Div", "Max", "Min", "Mul", "Pow", "Sub"}
LAST_AXIS = {"LayerNormalization", "SimplifiedLayerNormalization", "Softmax"}


@dataclass(frozen=True)
class Unpad(Checked):
    mask_input: str = param("attention_mask", "the graph input that marks real tokens (1) and padding (0)")
    bucket: int = param(64, "the packed length is rounded up to a multiple of this (never past the padded length), "
                            "so a runtime that prepares kernels per shape meets few: OpenVINO with the exact length "
                            "prepared kernels on most calls (MiniLM batch 32: 662 items/s against 1209 with 64)",
                        low=1)
    min_cosine: float = param(0.9999, "smallest row cosine against the padded graph that is accepted", low=0.0,
                              high=1.0)


@register("unpad", Unpad, formats=("onnx",), needs=("transformer",), objectives=("throughput",), searched=False,
          inserted=True,
          summary="token-wise layers run on real tokens only, not on padding (batches of texts of unequal length)")
def unpad(model, config: Unpad, ctx: PassContext) -> PassOutput:
    import onnx

    source = require_onnx(model, "unpad")
    target = ctx.workdir / "unpad.onnx"
    ctx.say("finding the token-wise layers")
    proto = onnx.load(str(source))
    found = _Rewrite(proto, config.mask_input, model.name, config.bucket).apply()
    save_onnx(proto, target)
    batches = sample_batches(model, ctx.split("calibration"), count=32)
    cosine = cosine_rows(run_onnx(source, batches), run_onnx(target, batches))
    if cosine.min() < config.min_cosine:
        raise ExportError(f"unpad changed the outputs of '{model.name}': min cosine {cosine.min():.6f} "
                          f"< {config.min_cosine}")
    masks = [b[config.mask_input] for b in batches if config.mask_input in b]
    padding = sum(m.size for m in masks) / max(1, sum(int((m != 0).sum()) for m in masks)) if masks else None
    notes = [f"{found.token_wise} token-wise nodes run on real tokens only ({found.packs} gathers in, "
             f"{found.unpacks} scatters out)",
             f"validated: min cosine {cosine.min():.6f} against the padded graph"
             + (f" on batches holding {padding:.2f}x their real tokens" if padding else "")]
    return PassOutput(as_onnx(model, target), notes=notes)


@dataclass
class _Found:
    token_wise: int
    packs: int
    unpacks: int


class _Rewrite:
    """The rewrite of one graph (in place): which nodes are token-wise, then the packs and unpacks around them."""

    def __init__(self, proto, mask_input: str, name: str, bucket: int = 1):
        self.proto, self.graph, self.name = proto, proto.graph, name
        self.mask, self.bucket = mask_input, bucket
        inputs = {i.name: i for i in self.graph.input}
        if mask_input not in inputs:
            raise UnsupportedModelError(f"unpad needs an input that marks padding: '{name}' has no input "
                                        f"'{mask_input}' (its inputs: {', '.join(inputs)}); set mask_input")
        self.shapes = self._infer_shapes()
        axes = self.shapes.get(mask_input)
        if not axes or len(axes) != 2 or not all(isinstance(d, str) and d for d in axes):
            raise UnsupportedModelError(f"unpad needs '{mask_input}' with dynamic batch and sequence axes; '{name}' "
                                        f"has shape {axes}: export it with dynamic axes")
        self.axes = tuple(axes)
        self.constants = {i.name for i in self.graph.initializer} | {
            o for n in self.graph.node if n.op_type == "Constant" for o in n.output}
        self.added: list = []      # the rewritten graph's nodes, in order (packs and unpacks before their users)
        self.packed: dict[str, str] = {}
        self.unpacked: dict[str, str] = {}
        self.count = 0

    def _infer_shapes(self) -> dict[str, list]:
        from onnx import numpy_helper
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        try:
            inferred = SymbolicShapeInference.infer_shapes(self.proto, auto_merge=True)
        except Exception as e:  # the tool raises plain Exception when a shape stays unknown
            raise UnsupportedModelError(f"unpad could not infer the shapes of '{self.name}' ({e})") from e
        shapes = {}
        for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            t = value.type.tensor_type
            if t.HasField("shape"):
                shapes[value.name] = [d.dim_param or d.dim_value for d in t.shape.dim]
        shapes.update({i.name: list(i.dims) for i in self.graph.initializer})
        for node in self.graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                shapes[node.output[0]] = list(numpy_helper.to_array(node.attribute[0].t).shape)
        self.types = {v.name: v.type.tensor_type.elem_type for v in
                      list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
        return shapes

    def _token(self, name: str) -> bool:
        dims = self.shapes.get(name)
        return dims is not None and len(dims) >= 3 and tuple(dims[:2]) == self.axes

    def _steady(self, name: str, rank: int) -> bool:
        """Broadcasts over batch and sequence without varying along them (a bias, a scale, a scalar)."""
        dims = self.shapes.get(name)
        if dims is None or any(d in self.axes for d in dims):
            return False
        return len(dims) <= rank - 2 or (len(dims) == rank and dims[0] == 1 and dims[1] == 1)

    def _token_wise(self, node) -> bool:
        if not node.output or not all(self._token(o) for o in node.output):
            return False
        rank = len(self.shapes[node.output[0]])
        inputs = [x for x in node.input if x]
        if node.op_type in BINARY:  # the token tensor may come second (bias + x)
            return any(self._token(x) for x in inputs) and all(self._token(x) or self._steady(x, rank) for x in inputs)
        if not inputs or not self._token(inputs[0]):
            return False
        if node.op_type in UNARY:
            return all(x in self.constants for x in inputs[1:])
        if node.op_type == "MatMul":
            return len(self.shapes.get(inputs[1]) or ()) == 2 and inputs[1] in self.constants
        if node.op_type in LAST_AXIS:
            axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
            return (axis < 0 or axis >= 2) and all(x in self.constants for x in inputs[1:])
        return False

    def _regions(self) -> set[int]:
        """Indices of the token-wise nodes worth packing: one with no token-wise neighbour would gather and
        scatter for nothing (the embeddings' first Add, a lone Cast)."""
        nodes = self.graph.node
        chosen = {i for i, node in enumerate(nodes) if self._token_wise(node)}
        producer = {o: i for i, node in enumerate(nodes) for o in node.output}
        consumers: dict[str, list[int]] = {}
        for i, node in enumerate(nodes):
            for x in node.input:
                consumers.setdefault(x, []).append(i)
        changed = True
        while changed:
            changed = False
            for i in sorted(chosen):
                node = nodes[i]
                if not any(producer.get(x) in chosen for x in node.input) and \
                        not any(c in chosen for o in node.output for c in consumers.get(o, [])):
                    chosen.discard(i)
                    changed = True
        return chosen

    def apply(self) -> _Found:
        from onnx import helper

        chosen = self._regions()
        if not chosen:
            raise UnsupportedModelError(f"unpad found no token-wise layers in '{self.name}' (no [batch, sequence, "
                                        f"...] tensors on the axes of '{self.mask}')")
        packed = {o for i in chosen for o in self.graph.node[i].output}
        outputs = [o.name for o in self.graph.output if o.name in packed]
        if outputs:
            raise UnsupportedModelError(f"unpad would change '{self.name}': its output {outputs[0]} holds a value "
                                        f"per token, and the padded positions would read zeros, not the model's own "
                                        f"values")
        self._indices()
        for i, node in enumerate(self.graph.node):
            if i in chosen:
                names = [self._pack(x) if x and self._token(x) and x not in packed else x for x in node.input]
            elif node.op_type == "Shape" and not node.attribute and node.input[0] in packed:
                # the padded shape, without gathering the tensor back for it: (batch, sequence) + the rest
                shape = self._padded_shape(node.input[0])
                node = helper.make_node("Identity", [shape], list(node.output), name=node.name)
                names = list(node.input)
            else:
                names = [self._unpack(x) if x in packed else x for x in node.input]
            del node.input[:]
            node.input.extend(names)
            self.added.append(node)
        del self.graph.node[:]
        self.graph.node.extend(self.added)
        del self.graph.value_info[:]  # packed tensors changed shape: ONNX infers them again
        return _Found(len(chosen), len(self.packed), len(self.unpacked))

    def _name(self, what: str) -> str:
        self.count += 1
        return f"unpad/{what}_{self.count}"

    def _node(self, op: str, inputs: list[str], what: str, **attrs) -> str:
        from onnx import helper

        out = self._name(what)
        self.added.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def _constant(self, value: np.ndarray, what: str) -> str:
        from onnx import helper, numpy_helper

        out = self._name(what)
        self.added.append(helper.make_node("Constant", [], [out], name=out, value=numpy_helper.from_array(value, out)))
        return out

    def _indices(self) -> None:
        """Where the real tokens are in the flattened (batch x sequence) axis, then as many more rows (copies of
        the first, read back by no one) as round their count up to the bucket, never past the padded length; and
        for each padded position the row of a packed tensor to read back (its own, or one past the last: a row of
        zeros)."""
        from onnx import TensorProto, helper

        def scalar(value: int, what: str) -> str:
            return self._constant(np.array(value, np.int64), what)

        flat = self._node("Reshape", [self.mask, self._constant(np.array([-1], np.int64), "minus_one")], "flat")
        padding = self._node("Equal", [flat, self._constant(np.array(0, self._mask_dtype()), "zero")], "padding")
        real = self._node("Not", [padding], "real")
        rows = self._node("Reshape", [self._node("NonZero", [real], "nonzero"),
                                      self._constant(np.array([-1], np.int64), "minus_one")], "rows")
        ones = self._node("Cast", [real], "ones", to=TensorProto.INT64)
        count = self._node("ReduceSum", [ones], "count", keepdims=0)
        bucket = scalar(self.bucket, "bucket")
        rounded = self._node("Mul", [self._node("Div", [self._node("Add", [count, scalar(self.bucket - 1, "b1")],
                                                                   "up"), bucket], "buckets"), bucket], "rounded")
        packed = self._node("Min", [rounded, self._node("Size", [flat], "padded")], "packed_length")
        extra = self._node("Sub", [packed, count], "extra")
        fill = self._node("ConstantOfShape", [self._node("Reshape", [extra, self._constant(np.array([1], np.int64),
                                                                                          "one_long")], "extra_1d")],
                          "fill", value=helper.make_tensor("zero", TensorProto.INT64, [1], [0]))
        self.rows = self._node("Concat", [rows, fill], "rows", axis=0)
        rank = self._node("Sub", [self._node("CumSum", [ones, scalar(0, "axis")], "cumsum"), scalar(1, "one")], "rank")
        self.back = self._node("Where", [real, rank, packed], "back")
        self.mask_shape = self._node("Shape", [self.mask], "mask_shape")

    def _mask_dtype(self):
        from onnx import helper

        return helper.tensor_dtype_to_np_dtype(self.types.get(self.mask, 7))

    def _rest(self, name: str) -> list[int]:
        rest = self.shapes[name][2:]
        if not all(isinstance(d, int) and d > 0 for d in rest):
            raise UnsupportedModelError(f"unpad needs the trailing dimensions of '{name}' in '{self.name}' fixed; "
                                        f"they are {rest}")
        return [int(d) for d in rest]

    def _pack(self, name: str) -> str:
        if name not in self.packed:
            shape = self._constant(np.array([1, -1] + self._rest(name), np.int64), "flat_shape")
            self.packed[name] = self._node("Gather", [self._node("Reshape", [name, shape], "flat"), self.rows],
                                           "packed", axis=1)
        return self.packed[name]

    def _padded_shape(self, name: str) -> str:
        return self._node("Concat", [self.mask_shape, self._constant(np.array(self._rest(name), np.int64), "rest")],
                          "padded_shape", axis=0)

    def _unpack(self, name: str) -> str:
        from onnx import helper

        if name not in self.unpacked:
            dtype = helper.tensor_dtype_to_np_dtype(self.types.get(name, 1))
            zeros = self._constant(np.zeros([1, 1] + self._rest(name), dtype), "zero_row")
            rows = self._node("Concat", [name, zeros], "with_zero_row", axis=1)
            self.unpacked[name] = self._node("Reshape", [self._node("Gather", [rows, self.back], "gathered", axis=1),
                                                         self._padded_shape(name)], "unpacked")
        return self.unpacked[name]

"""The fake-quant ONNX export of a QAT model, rewritten into the QDQ layout ONNX Runtime's int8 kernels run.

torch exports each fake-quantized layer as QuantizeLinear/DequantizeLinear on its input and on its float weight,
and nothing on its output. ONNX Runtime fuses a Conv into QLinearConv only when its output is quantized too, and
folds no weight into int8 in the file. So, keeping every scale the training learned:

- a weight's QuantizeLinear becomes an int8 initializer feeding its DequantizeLinear (per-channel, as ONNX
  Runtime's quantizer writes it); a Transpose between that DequantizeLinear and a MatMul moves into the weight;
- a quantized layer's output gets a QuantizeLinear/DequantizeLinear pair with the learned range of the next
  layer's input where only order-preserving operators (ReLU, MaxPool, reshapes) lie between them, and so does
  each of those operators' outputs: quantizing before them equals quantizing after them, so the numbers are the
  fake-quant model's, and ONNX Runtime runs the operators between on int8;
- any other Conv or Gemm output gets a range from the calibration batches (min/max, as ONNX Runtime's quantizer
  calibrates): ONNX Runtime runs no QLinearConv with a float output, and leaves DQ -> Gemm in float;
- any other MatMul output stays float: ONNX Runtime runs DQ -> MatMul as MatMulIntegerToFloat, the integer
  kernel of QLinearMatMul without the requantization. A range calibrated there adds an error the training never
  saw: on a transformer, where q/k/v, the FFN and the attention output all feed float operators (softmax, GELU,
  the residual adds), those ranges took the exported MiniLM from row cosine 0.994 with its fp32 model to 0.942.
"""

from __future__ import annotations

import numpy as np

LAYERS = ("Conv", "Gemm", "MatMul")
CALIBRATED_OUTPUTS = ("Conv", "Gemm")  # layers whose int8 kernel needs a quantized output (MatMul runs float out)
# elementwise-monotone or data-moving operators with a single data input: Q(op(x)) == op(Q(x)) for a per-tensor
# quantizer whose range holds 0 (ReLU keeps 0 exact)
ORDER_PRESERVING = ("Relu", "MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity")


class _Graph:
    """Producers, consumers and constant values of an ONNX graph, for the rewrite below."""

    def __init__(self, proto):
        from onnx import numpy_helper

        self.graph = proto.graph
        self.values = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        for node in self.graph.node:  # torch shares equal constants through Identity and Constant nodes
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            elif node.op_type == "Identity" and node.input[0] in self.values:
                self.values[node.output[0]] = self.values[node.input[0]]
        self.outputs = {o.name for o in self.graph.output}
        self.refresh()

    def refresh(self) -> None:
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def add(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.graph.initializer.append(numpy_helper.from_array(array, name))
        self.values[name] = array
        return name

    def only_consumer(self, tensor: str):
        found = self.consumers.get(tensor, [])
        return found[0] if len(found) == 1 and tensor not in self.outputs else None


def to_qdq(proto, calibration: list[dict[str, np.ndarray]], activation_range: tuple[int, int]) -> list[str]:
    """Rewrite the fake-quant export `proto` in place (see the module docstring); returns the Conv and Gemm outputs
    whose range was calibrated, not learned.

    `calibration`: input batches for the layer outputs without a learned range; `activation_range`: (qmin, qmax)
    of the activation type, (0, 255) for uint8."""
    graph = _Graph(proto)
    _weights_to_int8(graph)
    graph.refresh()
    layers = [n for n in graph.graph.node if n.op_type in LAYERS and _is_quantized(graph, n)]
    unranged = []
    for layer in layers:
        readers = graph.consumers.get(layer.output[0], [])
        if len(readers) == 1 and readers[0].op_type == "QuantizeLinear" and layer.output[0] not in graph.outputs:
            continue  # the next layer's input quantizer already sits on this output
        learned = _learned_range(graph, layer.output[0])
        if learned is not None:
            scale, zero, path = learned
            for node in [layer, *path[:-1]]:  # each operator on the way runs on int8 (ONNX Runtime drops the pairs)
                _quantize_output(graph, node, scale, zero)
        elif layer.op_type in CALIBRATED_OUTPUTS:
            unranged.append(layer.output[0])
    if unranged:
        ranges = _calibrate(proto, unranged, calibration, activation_range)
        for layer in layers:
            if layer.output[0] in ranges:
                _quantize_output(graph, layer, *ranges[layer.output[0]])
    _drop_dead(graph)
    return unranged


def _dq_source(graph: _Graph, tensor: str):
    node = graph.producer.get(tensor)
    return node if node is not None and node.op_type == "DequantizeLinear" else None


def _is_quantized(graph: _Graph, layer) -> bool:
    """Both the data and the weight come out of DequantizeLinear, the weight's from an int8 constant."""
    data, weight = (_dq_source(graph, name) for name in layer.input[:2])
    return data is not None and weight is not None and weight.input[0] in graph.values


def _weights_to_int8(graph: _Graph) -> None:
    """QuantizeLinear(float constant) -> the int8 constant itself; DQ -> Transpose -> MatMul -> DQ(transposed)."""
    from onnx import helper

    for node in list(graph.graph.node):
        if node.op_type != "QuantizeLinear" or len(node.input) < 3 or not set(node.input) <= set(graph.values):
            continue
        scale, zero = graph.values[node.input[1]], graph.values[node.input[2]]
        weight = graph.values[node.input[0]]
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % max(weight.ndim, 1)
        shape = [1] * weight.ndim
        if scale.size > 1:
            shape[axis] = scale.size
        info = np.iinfo(zero.dtype)
        quantized = np.clip(np.round(weight / scale.reshape(shape)) + zero.reshape(shape).astype(np.int32),
                            info.min, info.max).astype(zero.dtype)
        for dq in [c for c in graph.consumers.get(node.output[0], []) if c.op_type == "DequantizeLinear"]:
            stored, dq_axis = quantized, axis
            after = graph.only_consumer(dq.output[0])
            if after is not None and after.op_type == "Transpose" and scale.size > 1:
                user = graph.only_consumer(after.output[0])
                if user is not None and user.op_type == "MatMul" and user.input[1] == after.output[0]:
                    perm = list(next(a.ints for a in after.attribute if a.name == "perm"))
                    stored, dq_axis = np.transpose(quantized, perm), perm.index(axis)
                    user.input[1] = dq.output[0]
            name = graph.add(f"{node.input[0]}_quantized_{len(graph.values)}", np.ascontiguousarray(stored))
            dq.input[0] = name
            dq.input[1] = graph.add(f"{name}_scale", scale.astype(np.float32))
            dq.input[2] = graph.add(f"{name}_zero_point", zero)
            del dq.attribute[:]
            if scale.size > 1:
                dq.attribute.append(helper.make_attribute("axis", dq_axis))
        graph.refresh()


def _learned_range(graph: _Graph, tensor: str):
    """(scale, zero point, the operators passed) of the activation QuantizeLinear reached from `tensor` through
    order-preserving operators that nothing else reads; None where the path branches, meets another operator, or
    the quantizers at its end disagree (two layers that read one tensor with ranges of their own)."""
    path = []
    while True:
        readers = graph.consumers.get(tensor, [])
        if tensor in graph.outputs or not readers:
            return None
        if all(r.op_type == "QuantizeLinear" for r in readers):
            if not all(len(r.input) == 3 and r.input[1] in graph.values and r.input[2] in graph.values
                       and graph.values[r.input[1]].size == 1 for r in readers):
                return None
            found = {(graph.values[r.input[1]].item(), graph.values[r.input[2]].item()) for r in readers}
            if len(found) != 1:
                return None
            scale, zero = found.pop()
            return np.float32(scale), np.array(zero, graph.values[readers[0].input[2]].dtype), path
        reader = graph.only_consumer(tensor)
        if reader is None or reader.op_type not in ORDER_PRESERVING or reader.input[0] != tensor:
            return None
        path.append(reader)
        tensor = reader.output[0]


def _quantize_output(graph: _Graph, layer, scale, zero) -> None:
    """layer -> QuantizeLinear -> DequantizeLinear -> what read the layer's output before (any single-output
    node will do as `layer`)."""
    from onnx import helper

    out = layer.output[0]
    raw, quantized = f"{out}_float", f"{out}_quantized"
    scale_name = graph.add(f"{out}_scale", np.asarray(scale, np.float32))
    zero_name = graph.add(f"{out}_zero_point", np.asarray(zero))
    layer.output[0] = raw
    at = list(graph.graph.node).index(layer) + 1
    graph.graph.node.insert(at, helper.make_node("QuantizeLinear", [raw, scale_name, zero_name], [quantized],
                                                 name=f"{out}_QuantizeLinear"))
    graph.graph.node.insert(at + 1, helper.make_node("DequantizeLinear", [quantized, scale_name, zero_name], [out],
                                                     name=f"{out}_DequantizeLinear"))
    graph.refresh()


def _calibrate(proto, tensors: list[str], batches, activation_range: tuple[int, int]):
    """Affine (scale, zero point) per tensor from its min and max over `batches`, 0 included."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    low = dict.fromkeys(tensors, 0.0)
    high = dict.fromkeys(tensors, 0.0)
    for batch in batches:
        for name, value in zip(tensors, session.run(tensors, {k: v for k, v in batch.items() if k in wanted})):
            low[name], high[name] = min(low[name], float(value.min())), max(high[name], float(value.max()))
    qmin, qmax = activation_range
    dtype = np.uint8 if qmin == 0 else np.int8
    ranges = {}
    for name in tensors:
        scale = max(high[name] - low[name], 1e-8) / (qmax - qmin)
        zero = int(np.clip(qmin - round(low[name] / scale), qmin, qmax))
        ranges[name] = (np.float32(scale), np.array(zero, dtype))
    return ranges


def _drop_dead(graph: _Graph) -> None:
    """Nodes whose outputs nothing reads (the weights' QuantizeLinear, folded Transposes), then initializers."""
    while True:
        graph.refresh()
        dead = [n for n in graph.graph.node
                if not any(o in graph.consumers or o in graph.outputs for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.graph.node.remove(node)
    used = set(graph.consumers) | graph.outputs
    keep = [i for i in graph.graph.initializer if i.name in used]
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(keep)

"""Quantization-aware training: fake-quantize the int8 scheme ONNX Runtime runs, fine-tune on the train split so
the weights learn to live with it, then export the int8 ONNX graph.

The fake-quant modules are torch.ao.quantization's (`FakeQuantize` with its min/max observers), not ours, and
they are chosen over torchao's QAT API because torchao fakes only per-token dynamic activations (no per-tensor
static ranges, the scheme ONNX Runtime's int8 kernels take) and exports no QuantizeLinear/DequantizeLinear: a
torch.ao fake-quant exports as exactly the QDQ pair that ONNX Runtime fuses into its int8 kernels.

Scheme: per-channel symmetric int8 weights on every Linear and Conv2d; activations at their inputs either
static (uint8 or int8, one range per tensor, calibrated on the calibration split, trained with the weights, then
frozen) or dynamic (a range per batch, as ONNX Runtime's DynamicQuantizeLinear computes it). Static goes as far as
the runtimes' int8 kernels do: layers that read one tensor (q, k and v) share its one quantizer, and the Linear
outputs that are both operands of a matmul (attention's query and key) are fake-quantized too, symmetric int8, so
OpenVINO runs the attention itself in int8 (on MiniLM at batch 32 its six attention subgraphs took 14.9 ms in
fp32 against NNCF's 11.3 ms in int8, docs/benchmarks.md "Operator profile"). Static exports the
fake-quant graph and lays it out as ONNX Runtime's int8 kernels take it (`qat_onnx.py`: int8 weights, quantized
layer outputs, the learned scales kept); dynamic exports the trained float weights and quantizes them with ONNX
Runtime's dynamic quantizer, whose per-channel weight scales are the same absmax / 127.5 (its ConvInteger takes
one weight scale per tensor, so convolutions get that).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass

from infertune.errors import PassError
from infertune.passes.onnx_utils import as_onnx, sample_batches
from infertune.passes.quantize.onnx_backend import reduced_range
from infertune.passes.registry import INT8_ISA, Checked, param, PassContext, PassOutput, SearchFacts, register

CALIBRATION_SAMPLES = 128
FREEZE_AT = 0.5  # fraction of the training steps after which activation ranges and batch norm stop moving


@dataclass(frozen=True)
class Qat(Checked):
    activations: str = param("static", "static: a calibrated range per tensor (QDQ graph); dynamic: a range per "
                                       "batch", choices=("static", "dynamic"))
    activation_type: str = param("quint8", "static activations: quint8 (ONNX Runtime's fast AMX/VNNI path) or qint8",
                                 choices=("quint8", "qint8"))
    epochs: int = param(3, "passes over the train split, at most", low=1)
    steps: int = param(400, "training steps, at most", low=1)
    seconds: float = param(300.0, "training seconds, at most (the trial's time budget bounds this)", low=0.0,
                           open_low=True)
    lr: float = param(5e-6, "learning rate (AdamW); small, the weights start trained", low=0.0, open_low=True)
    batch: int = param(16, "samples per training step", low=1)
    alpha: float = param(0.5, "class scores with labels: weight of the fp32 model's soft targets against the labels",
                         low=0.0, high=1.0)
    exclude: tuple[str, ...] = param((), "module names kept in float (first or last layers, say)")
    attention: bool = param(True, "static activations: also fake-quantize the Linear outputs that are both operands "
                                  "of a matmul (attention's query and key), so the runtime can run it in int8")
    min_cosine: float = param(0.999, "smallest row cosine of the exported graph against the fake-quant model",
                              low=0.0, high=1.0)
    tolerance: float = param(0.002, "below min_cosine: how far the exported graph's fidelity to fp32 (mean cosine, "
                                    "or top-1 with labels) may fall under the fake-quant model's", low=0.0, high=1.0)
    reduce_range: bool | None = param(None, "7-bit weights, so no product pair saturates on x86 without VNNI; "
                                            "None: where this CPU needs it (registry.int8_saturates)")


def qat_candidates(facts: SearchFacts) -> tuple[Qat, ...]:
    """The search trains within its share of the time budget; a transformer's trained weights take a smaller
    learning rate than a CNN's or an MLP's (on MiniLM, 2e-5 moved the calibration-split fidelity from 0.99335 down
    to 0.99288; 5e-6 up to 0.99403)."""
    return (Qat(seconds=facts.training_seconds, lr=5e-6 if facts.transformer else 1e-4),)


@register("qat", Qat, formats=("torch",), stage="precision", needs=("training", "calibration", "torch-layers"),
          backends=("onnxruntime", "openvino"), accelerated_by=INT8_ISA, makes="onnx", to_budget=True,
          candidates=qat_candidates,
          summary="quantization-aware training: fake-quant int8 fine-tuned on the train split, exported as int8 ONNX")
def qat(model, config: Qat, ctx: PassContext) -> PassOutput:
    import torch

    from infertune.passes.training import train

    split = ctx.require("train", "qat needs training data: pass --data (the train split is used), or use int8-static")
    calibration = ctx.require("calibration", "qat calibrates its activation ranges on the calibration split: pass "
                                             "--data, or use int8-dynamic")
    teacher = model.module
    student = copy.deepcopy(teacher).eval()
    folded = _fold_batchnorm(student)
    if folded is not None:
        student = folded
    reduce, why = reduced_range(config.reduce_range)
    wrapped = fake_quantize(student, activations=config.activations, activation_type=config.activation_type,
                            exclude=config.exclude, reduce_range=reduce)
    if not wrapped:
        raise PassError(f"qat found no Linear or Conv2d layer to quantize in '{model.name}'")
    quantized = dataclasses.replace(model, module=student)
    shared, operands = [], []
    if config.activations == "static":
        shared, operands = share_inputs_and_quantize_operands(quantized, calibration, operands=config.attention)
    ctx.say(f"calibrating activation ranges of {len(wrapped)} layers")
    calibrate(quantized, calibration)
    ctx.say(f"training with fake int8 (at most {config.steps} steps, {config.seconds:.0f} s)")
    before = fidelity(quantized, teacher, calibration)
    untrained = copy.deepcopy(student.state_dict())
    freeze = _freeze_after(student, max(1, int(config.steps * FREEZE_AT)))
    try:
        stats = train(quantized, split, epochs=config.epochs, lr=config.lr, batch=config.batch, teacher=teacher,
                      alpha=config.alpha, say=ctx.say, max_steps=config.steps, max_seconds=config.seconds,
                      dropout=False)
    finally:
        freeze.remove()
    freeze_ranges(student)
    student.eval()
    after = fidelity(quantized, teacher, calibration)
    kept = after >= before
    if not kept:  # training that moved the model away from fp32 on data it did not train on is undone
        student.load_state_dict(untrained)
        freeze_ranges(student)
    with torch.no_grad():
        path, check, calibrated = export_int8(quantized, ctx, config, reduce)
    exported, checked = _check_export(quantized, teacher, calibration, path, check, after if kept else before, config)
    notes = [f"QAT int8: per-channel int8 weights, {_activation_text(config)} activations on {len(wrapped)} layers"
             f"{why}; "
             f"trained {stats.steps} steps ({stats.epochs:.2f} epochs, stopped by {stats.stopped_by}) in "
             f"{stats.seconds:.0f} s; calibration-split fidelity to fp32 {before:.6f} before training, {after:.6f} "
             f"after" + ("" if kept else " (worse, so the untrained fake-quant weights were kept)")
             + f"; {checked}"]
    if shared:
        notes.append(f"{sum(len(g) for g in shared)} layers read {len(shared)} tensors in groups (the q, k and v "
                     f"projections, say): each group shares one input quantizer, as the runtime quantizes the tensor "
                     f"once")
    if operands:
        notes.append(f"the outputs of {len(operands)} layers feed a matmul of two activations (attention's query "
                     f"and key): they are fake-quantized too, so the runtime can run that matmul in int8")
    if folded is not None:
        notes.append("batch norm folded into the convolutions before training")
    if calibrated:
        notes.append(f"{len(calibrated)} of {len(wrapped)} quantized layer outputs (Conv, Gemm) feed no "
                     f"quantized layer through ReLU, pooling or reshapes: their int8 range is calibrated (min/max), "
                     f"not trained")
    return PassOutput(as_onnx(model, path), notes=notes,
                      details={"train_seconds": stats.seconds, "train_steps": stats.steps, "export_check": check,
                               "fidelity_before": before, "fidelity_after": after, "fidelity_exported": exported,
                               "trained_weights_kept": kept, "shared_input_quantizers": shared,
                               "quantized_operands": operands})


def fidelity(model, teacher, split, samples: int = CALIBRATION_SAMPLES, graph=None) -> float:
    """How good the model is on a split it does not train on: top-1 accuracy where a classifier has labels, else
    the mean row cosine of its outputs with `teacher`'s (top-1 agreement hides small moves on a small split).
    With `graph` (an ONNX file) the graph's outputs are measured instead of the module's."""
    import numpy as np
    import torch

    from infertune.data.metrics import row_cosines

    model.module.eval()
    session = None
    if graph is not None:
        import onnxruntime as ort

        session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
    labels = split.labels if model.task == "classification" else None
    found, start = [], 0
    with torch.no_grad():
        for batch in sample_batches(model, split, count=samples, batch=16):
            tensors = [torch.from_numpy(batch[n]) for n in model.signature.input_names]
            if session is None:
                out = model.module(*tensors).reshape(len(tensors[0]), -1).numpy()
            else:
                out = session.run(None, {k: v for k, v in batch.items() if k in wanted})[0].reshape(len(tensors[0]), -1)
            if labels is not None:
                found.append(out.argmax(axis=1) == labels[start:start + len(out)])
            else:
                found.append(row_cosines(teacher(*tensors).reshape(len(tensors[0]), -1).numpy(), out))
            start += len(out)
    return float(np.mean(np.concatenate(found)))


def _check_export(model, teacher, split, path, check: dict, trained: float, config: "Qat") -> tuple[float, str]:
    """The exported graph is the fake-quant model when their outputs agree row by row (min cosine); where they
    do not, the two must be equally faithful to the fp32 model. A quantized transformer sits on rounding edges:
    the float sums of ONNX Runtime's integer kernels and of torch differ in the last bits, a few values land on the
    other side of a rounding step, and after six layers the two are 0.994 apart by cosine while each is 0.994
    from fp32. Returns (the graph's fidelity to fp32, how it passed); raises PassError when it does neither."""
    worst = min(figures["min_cosine"] for figures in check.values())
    exported = fidelity(model, teacher, split, graph=path)
    if worst >= config.min_cosine:
        return exported, f"exported graph vs fake-quant model: min cosine {worst:.5f}"
    if exported >= trained - config.tolerance:
        return exported, (f"exported graph vs fake-quant model: min cosine {worst:.5f} (rounding flips), but as "
                          f"faithful to fp32: {exported:.6f} against the fake-quant model's {trained:.6f}")
    raise PassError(f"qat's exported int8 graph of '{model.name}' is not the fake-quant model: min cosine "
                    f"{worst:.5f} (needs >= {config.min_cosine}), and its fidelity to fp32 is {exported:.6f} against "
                    f"the fake-quant model's {trained:.6f} (tolerance {config.tolerance})")


def _activation_text(config: Qat) -> str:
    return f"static {config.activation_type}" if config.activations == "static" else "dynamic uint8"


def _fold_batchnorm(module):
    """Conv + BatchNorm as one conv, so the int8 conv weights are the ones that run (None without batch norm)."""
    import torch

    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        return None
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module.eval(), inplace=True)
    except Exception as e:  # a model torch.fx cannot trace keeps its batch norm, in float
        raise PassError(f"qat could not fold batch norm (torch.fx: {type(e).__name__}: {e}); fold it first") from e


def _fake_quantizers(activations: str, activation_type: str, reduce_range: bool = False):
    """torch.ao.quantization fake-quant modules: (activation, weight). With `reduce_range`, 7-bit weights."""
    import torch
    from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver

    observer = _seven_bit_observer() if reduce_range else MovingAveragePerChannelMinMaxObserver
    weight = FakeQuantize(observer=observer, quant_min=-128, quant_max=127, dtype=torch.qint8,
                          qscheme=torch.per_channel_symmetric, ch_axis=0, averaging_constant=1.0)
    if activations == "dynamic":  # the range of each batch, as DynamicQuantizeLinear computes it (uint8)
        activation = FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                                  dtype=torch.quint8, qscheme=torch.per_tensor_affine, averaging_constant=1.0)
    else:
        low, high = (0, 255) if activation_type == "quint8" else (-128, 127)
        activation = FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=low, quant_max=high,
                                  dtype=getattr(torch, activation_type), qscheme=torch.per_tensor_affine)
    activation.infertune_static = activations == "static"
    return activation, weight


@functools.lru_cache(maxsize=1)
def _seven_bit_observer():
    """A per-channel weight observer whose scales are ONNX Runtime's for 7-bit weights (`reduce_range`: absmax / 64,
    every weight within -64 to 64) while the range stays int8's, the only one the ONNX export of a fake-quant takes."""
    from torch.ao.quantization import MovingAveragePerChannelMinMaxObserver

    class SevenBitWeights(MovingAveragePerChannelMinMaxObserver):
        def calculate_qparams(self):
            scale, zero_point = super().calculate_qparams()  # symmetric over -128 to 127: absmax / 127.5
            return scale * (127.5 / 64), zero_point

    return SevenBitWeights


def _operand_quantizer():
    """Symmetric int8, one static range per tensor, for an operand of a matmul of two activations: a zero point
    would leave a subtraction in front of the matmul, and OpenVINO runs its int8 attention on int8 operands."""
    import torch
    from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver

    quant = FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8,
                         qscheme=torch.per_tensor_symmetric)
    quant.infertune_static = True
    return quant


@functools.lru_cache(maxsize=1)
def _classes() -> dict[type, type]:
    """Linear and Conv2d -> subclasses whose forward fake-quantizes the input and the weight (same parameters,
    so state dicts, pruning and parameter counts still see a Linear or Conv2d). Built on first use: torch is
    imported lazily."""
    import torch
    import torch.nn.functional as F

    class FakeQuantizedLinear(torch.nn.Linear):
        def forward(self, input):
            out = F.linear(self.input_quant(input), self.weight_quant(self.weight), self.bias)
            quant = getattr(self, "output_quant", None)  # set where the output feeds a matmul of two activations
            return out if quant is None else quant(out)

    class FakeQuantizedConv2d(torch.nn.Conv2d):
        def forward(self, input):
            return self._conv_forward(self.input_quant(input), self.weight_quant(self.weight), self.bias)

    return {torch.nn.Linear: FakeQuantizedLinear, torch.nn.Conv2d: FakeQuantizedConv2d}


def fake_quantize(module, *, activations: str = "static", activation_type: str = "quint8",
                  exclude: tuple[str, ...] = (), reduce_range: bool = False) -> list[str]:
    """Turn every Linear and Conv2d of `module` (in place) into its fake-quantized form; returns their names."""
    done = []
    for name, layer in module.named_modules():
        if type(layer) not in _classes() or name in exclude:
            continue
        layer.__class__ = _classes()[type(layer)]
        layer.input_quant, layer.weight_quant = _fake_quantizers(activations, activation_type, reduce_range)
        done.append(name)
    return done


MATMULS = ("matmul", "bmm", "__matmul__")  # torch and Tensor functions that multiply two tensors


def share_inputs_and_quantize_operands(model, split, *, operands: bool = True) -> tuple[list[list[str]], list[str]]:
    """Runs one calibration batch through the fake-quantized module and looks at what the layers read and feed:

    - layers that read the very same tensor (q, k and v of one hidden state) get one shared input quantizer: an
      int8 runtime quantizes a tensor once, and three ranges for it would be three quantize operations;
    - a Linear whose output reaches a matmul of two activations (attention's query times key) only through views,
      with the other operand also a Linear's output, gets an output quantizer: the runtime can then run that
      matmul in int8 (OpenVINO fuses the quantized attention into one int8 kernel). The softmax-times-value matmul
      is left float, as NNCF's transformer scheme leaves it; a fused qkv projection's output is quantized whole.

    Returns (the groups that share, the layers whose output is quantized)."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    module = model.module
    layers = {layer: name for name, layer in module.named_modules() if hasattr(layer, "input_quant")}
    readers: dict[int, list] = {}
    source: dict[int, object] = {}  # id(tensor) -> the Linear whose output it is, or a view of it
    alive: list = []  # tensors are kept alive, so ids stay unique during the forward

    calls: dict = {}

    def pre_hook(layer, args):
        calls[layer] = calls.get(layer, 0) + 1
        if args:
            alive.append(args[0])
            readers.setdefault(id(args[0]), []).append(layer)

    def hook(layer, args, output):
        if isinstance(layer, torch.nn.Linear):
            alive.append(output)
            source[id(output)] = layer

    pairs: list[tuple] = []

    class Spy(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            factors = None
            if func is F.scaled_dot_product_attention:  # (query, key, value): query times key
                factors = [args[0] if len(args) > 0 else kwargs.get("query"),
                           args[1] if len(args) > 1 else kwargs.get("key")]
            elif getattr(func, "__name__", "") in MATMULS and len(tensors) == 2:
                factors = tensors
            if factors is not None:
                if all(id(t) in source for t in factors):
                    pairs.append((source[id(factors[0])], source[id(factors[1])]))
            elif len(tensors) == 1 and id(tensors[0]) in source:
                # a view (reshape, transpose, a chunk of a fused qkv output) of a layer's output is still that output
                storage = tensors[0].untyped_storage().data_ptr()
                for view in out if isinstance(out, (tuple, list)) else (out,):
                    if isinstance(view, torch.Tensor) and view.untyped_storage().data_ptr() == storage:
                        alive.append(view)
                        source[id(view)] = source[id(tensors[0])]
            return out

    handles = [layer.register_forward_pre_hook(pre_hook) for layer in layers]
    handles += [layer.register_forward_hook(hook) for layer in layers]
    batch = sample_batches(model, split, count=8, batch=8)[0]
    try:
        module.eval()
        with torch.no_grad(), Spy():
            module(*[torch.from_numpy(batch[n]) for n in model.signature.input_names])
    finally:
        for handle in handles:
            handle.remove()
    # a layer called more than once (shared weights) reads more than one tensor: it keeps its own quantizer
    shared = [group for group in readers.values() if len(group) > 1 and all(calls[layer] == 1 for layer in group)]
    for group in shared:
        for layer in group[1:]:
            layer.input_quant = group[0].input_quant
    quantized = {layer for pair in pairs for layer in pair} if operands else set()
    for layer in quantized:
        layer.output_quant = _operand_quantizer()
    return [[layers[layer] for layer in group] for group in shared], sorted(layers[layer] for layer in quantized)


def _observers(module):
    from torch.ao.quantization import FakeQuantize

    return [m for m in module.modules() if isinstance(m, FakeQuantize)]


def calibrate(model, split, samples: int = CALIBRATION_SAMPLES) -> None:
    """Static ranges start at the mean per-batch min/max of calibration data (what minmax calibration gives)."""
    import torch

    activation = [m for m in _observers(model.module) if getattr(m, "infertune_static", False)]
    if not activation:
        return
    model.module.eval()
    batches = sample_batches(model, split, count=samples, batch=8)
    with torch.no_grad():
        for index, batch in enumerate(batches):
            for fq in activation:
                fq.activation_post_process.averaging_constant = 1.0 / (index + 1)
            model.module(*[torch.from_numpy(batch[n]) for n in model.signature.input_names])
    for fq in activation:
        fq.activation_post_process.averaging_constant = 0.01


def freeze_ranges(module) -> None:
    """Static activation ranges and weights' scales stop moving (dynamic activations keep measuring per batch);
    weight scales are measured once more first, on the weights as the last training step left them."""
    import torch

    with torch.no_grad():
        for layer in module.modules():
            if hasattr(layer, "weight_quant"):
                layer.weight_quant.enable_observer()
                layer.weight_quant(layer.weight)
    for fq in _observers(module):
        if getattr(fq, "infertune_static", True):
            fq.disable_observer()


def _freeze_after(module, steps: int):
    """A forward hook that freezes the static activation ranges after `steps` training calls."""
    calls = [0]

    def hook(mod, args, output):
        if mod.training:
            calls[0] += 1
            if calls[0] == steps:
                for fq in _observers(mod):
                    if getattr(fq, "infertune_static", False):
                        fq.disable_observer()

    return module.register_forward_hook(hook)


def export_int8(model, ctx: PassContext, config: Qat, reduce_range: bool = False):
    """The int8 ONNX graph, checked against the fake-quant model: (path, per-output check report, the layer
    outputs whose range was calibrated, not learned). `reduce_range`: as the model was fake-quantized."""
    from infertune.passes import export

    calibration = ctx.split("calibration")
    inputs = sample_batches(model, calibration, count=16, batch=8)
    target = ctx.workdir / "qat-int8.onnx"
    if config.activations == "static":
        import onnx

        from infertune.passes.quantize.qat_onnx import to_qdq

        # the QDQ pairs carry the very (frozen) scales the model was trained with; to_qdq lays them out as ONNX
        # Runtime's int8 kernels take them (int8 weights, quantized layer outputs)
        fake_quant = ctx.workdir / "qat-fake-quant.onnx"
        export.export_onnx(model, fake_quant, inputs=inputs, atol=float("inf"), min_cosine=0.0)
        low, high = (0, 255) if config.activation_type == "quint8" else (-128, 127)
        proto = onnx.load(str(fake_quant))
        calibrated = to_qdq(proto, sample_batches(model, calibration, count=CALIBRATION_SAMPLES, batch=16),
                            (low, high))
        onnx.save(proto, str(target))
        fake_quant.unlink()
        return target, export.check(model, target, atol=float("inf"), min_cosine=0.0, inputs=inputs), calibrated
    from onnxruntime.quantization import QuantType, quantize_dynamic

    plain = dataclasses.replace(model, module=_without_fake_quant(model.module))
    fp32 = ctx.workdir / "qat-fp32.onnx"
    export.export_onnx(plain, fp32, inputs=inputs)
    quantize_dynamic(str(fp32), str(target), op_types_to_quantize=["MatMul", "Gemm", "Conv"], per_channel=True,
                     reduce_range=reduce_range, weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": 1})
    return target, export.check(model, target, atol=float("inf"), min_cosine=0.0, inputs=inputs), []


def _without_fake_quant(module):
    """A copy whose fake-quantized layers are plain Linear / Conv2d again (the trained float weights)."""
    plain = copy.deepcopy(module)
    for layer in plain.modules():
        base = next((b for b, q in _classes().items() if type(layer) is q), None)
        if base is not None:
            del layer.input_quant, layer.weight_quant
            if hasattr(layer, "output_quant"):
                del layer.output_quant
            layer.__class__ = base
    return plain

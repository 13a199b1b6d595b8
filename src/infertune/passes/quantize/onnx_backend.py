"""ONNX Runtime quantization: int8 dynamic and static (QDQ), int4 weight-only (MatMulNBits), fp16."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from infertune.passes.onnx_utils import as_onnx, require_onnx, sample_batches
from infertune.passes.registry import (INT8_ISA, SATURATES, Checked, param, PassContext, PassOutput, SearchFacts,
                                      int8_saturates, register)

# Graphs with fused Attention need this, or quantization fails on tensors of unknown type
FLOAT_DEFAULT = {"DefaultTensorType": 1}  # onnx.TensorProto.FLOAT


class _DropPreprocessAdvice(logging.Filter):
    """ONNX Runtime's quantizer logs advice to the root logger on every call; int8-static pre-processes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


logging.getLogger().addFilter(_DropPreprocessAdvice())


def _quant_type(name: str):
    from onnxruntime.quantization import QuantType

    return {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[name]


@dataclass(frozen=True)
class Int8Dynamic(Checked):
    per_channel: bool = param(True, "one weight scale per output channel (else one per tensor)",
                              search=(True, False))
    reduce_range: bool | None = param(None, "7-bit weights, so no product pair saturates on x86 without VNNI; "
                                            "None: where this CPU needs it (registry.int8_saturates)")
    weight_type: str = param("qint8", "qint8 or quint8 weights", choices=("qint8", "quint8"))
    op_types: tuple[str, ...] = param(("MatMul", "Attention", "Gemm"), "operator types to quantize")
    exclude: tuple[str, ...] = param((), "node names kept in float (mixed precision)")


def reduced_range(reduce_range: bool | None) -> tuple[bool, str]:
    """(7-bit weights or not, what the pass's notes add about it) for a pass's `reduce_range` setting."""
    if reduce_range is None:
        reduce_range = int8_saturates()
        return reduce_range, f"; 7-bit weights: {SATURATES}" if reduce_range else ""
    return reduce_range, "; 7-bit weights" if reduce_range else ""


@register("int8-dynamic", Int8Dynamic, formats=("onnx",), stage="precision", backends=("onnxruntime",),
          accelerated_by=INT8_ISA,
          summary="ONNX Runtime int8 weights, activations quantized at run time; no data needed")
def int8_dynamic(model, config: Int8Dynamic, ctx: PassContext) -> PassOutput:
    from onnxruntime.quantization import quantize_dynamic

    source = require_onnx(model, "int8-dynamic")
    target = ctx.workdir / "int8-dynamic.onnx"
    ctx.say("quantizing (int8 dynamic)")
    reduce, why = reduced_range(config.reduce_range)
    quantize_dynamic(str(source), str(target), op_types_to_quantize=list(config.op_types),
                     per_channel=config.per_channel, reduce_range=reduce,
                     weight_type=_quant_type(config.weight_type), nodes_to_exclude=list(config.exclude),
                     extra_options=dict(FLOAT_DEFAULT))
    return PassOutput(as_onnx(model, target),
                      notes=[f"int8 dynamic, {'per-channel' if config.per_channel else 'per-tensor'} "
                             f"{config.weight_type} weights{why}; {len(config.exclude)} nodes kept in float"])


@dataclass(frozen=True)
class Int8Static(Checked):
    calibration: str = param("minmax", "calibration method: minmax, entropy or percentile",
                             search=("minmax", "entropy", "percentile"), choices=("minmax", "entropy", "percentile"))
    per_channel: bool = param(True, "one weight scale per output channel", search=(True, False))
    activation_type: str = param("quint8", "quint8 or qint8 activations", choices=("quint8", "qint8"))
    op_types: tuple[str, ...] = param(("MatMul", "Gemm", "Conv"), "operator types to quantize")
    exclude: tuple[str, ...] = param((), "node names kept in float (mixed precision)")
    samples: int = param(128, "calibration samples, from the calibration split only", low=1)
    percentile: float = param(99.999, "for percentile calibration", low=0.0, high=100.0, open_low=True)
    float_outputs: bool = param(False, "quantize only the inputs and weights of MatMul / Gemm and leave their outputs "
                                       "float (ONNX Runtime runs MatMulIntegerToFloat): no requantization error "
                                       "after each product", search=(False, True))
    reduce_range: bool | None = param(None, "7-bit weights, so no product pair saturates on x86 without VNNI; "
                                            "None: where this CPU needs it (registry.int8_saturates)")

    @property
    def takes_prepared_graph(self) -> bool:
        """Whether the search puts graph preparation (ONNX Runtime's transformer fusion) before this pass. Not for
        float MatMul outputs: the QDQ quantizer cannot type the fused operators' tensors and leaves them float."""
        return not self.float_outputs


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over our calibration batches."""

    def __init__(self, batches, input_names):
        self._batches = [{k: v for k, v in b.items() if k in input_names} for b in batches]
        self._index = 0

    def get_next(self):
        if self._index >= len(self._batches):
            return None
        self._index += 1
        return self._batches[self._index - 1]

    def rewind(self):
        self._index = 0


def _one_length(batches: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Text batches padded (zeros, attention mask 0) to the longest, because ONNX Runtime's histogram calibrators
    (entropy, percentile) stack every batch's activations into one array."""
    longest = max(v.shape[1] for b in batches for v in b.values() if v.ndim >= 2)
    return [{k: np.pad(v, [(0, 0), (0, longest - v.shape[1])] + [(0, 0)] * (v.ndim - 2)) if v.ndim >= 2 else v
             for k, v in b.items()} for b in batches]


def static_candidates(facts: SearchFacts) -> tuple[Int8Static, ...]:
    """What the search tries of static int8. Every layer's output quantized (the all-QDQ layout) on a model that is
    not a transformer, and on a transformer only where the CPU has AMX int8, whose ONNX Runtime kernel runs that
    layout; elsewhere a transformer loses too much to requantizing each product (MiniLM: cosine 0.938). On a
    transformer also the layout that leaves MatMul outputs float: the inputs' ranges are calibrated, so no
    run-time quantization of activations is left (MiniLM on AVX-512 VNNI, 2 cores: cosine 0.990, batch 32 913
    items/s against 830 for fused int8 dynamic, benchmarks/passes.py)."""
    if not facts.transformer:
        return (Int8Static(activation_type="quint8"),)
    full = (Int8Static(activation_type="quint8"),) if "amx_int8" in facts.isa else ()
    return full + (Int8Static(float_outputs=True),)


@register("int8-static", Int8Static, formats=("onnx",), stage="precision", needs=("calibration",),
          backends=("onnxruntime",), accelerated_by=INT8_ISA, candidates=static_candidates,
          summary="ONNX Runtime int8 QDQ with activation ranges calibrated on the calibration split")
def int8_static(model, config: Int8Static, ctx: PassContext) -> PassOutput:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = require_onnx(model, "int8-static")
    split = ctx.require("calibration", "int8-static needs calibration data: pass --data, or use int8-dynamic")
    batches = sample_batches(model, split, count=config.samples, batch=1 if model.is_text else 16)
    if model.is_text and config.calibration != "minmax":
        batches = _one_length(batches)
    prepared = ctx.workdir / "int8-static.pre.onnx"
    ctx.say("preparing graph for calibration")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=model.is_text)
    except Exception:  # pre-processing is an optimisation; quantize the graph as it is when it fails
        prepared = source
    names = {i.name for i in ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"]).get_inputs()}
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[config.calibration]
    extra = {**FLOAT_DEFAULT, "CalibPercentile": config.percentile}
    if config.float_outputs:
        extra["OpTypesToExcludeOutputQuantization"] = ["MatMul", "Gemm"]
    target = ctx.workdir / "int8-static.onnx"
    ctx.say(f"calibrating on {sum(len(next(iter(b.values()))) for b in batches)} samples ({config.calibration})")
    reduce, why = reduced_range(config.reduce_range)
    quantize_static(str(prepared), str(target), _Reader(batches, names), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(config.op_types), per_channel=config.per_channel,
                    reduce_range=reduce, activation_type=_quant_type(config.activation_type),
                    weight_type=_quant_type("qint8"), nodes_to_exclude=list(config.exclude), calibrate_method=method,
                    extra_options=extra)
    outputs = "; MatMul/Gemm outputs left float" if config.float_outputs else ""
    return PassOutput(as_onnx(model, target),
                      notes=[f"int8 static QDQ, {config.calibration} calibration on {config.samples} calibration "
                             f"samples{outputs}{why}; {len(config.exclude)} nodes kept in float"])


@dataclass(frozen=True)
class Int4WeightOnly(Checked):
    block_size: int = param(32, "weights per scale along the input dimension", search=(32, 64, 128))
    symmetric: bool = param(True, "symmetric (no zero point) 4-bit weights")
    accuracy_level: int = param(4, "MatMulNBits compute type: 4 = int8 activations (fast on CPU), 0 = float")


@register("int4-weight-only", Int4WeightOnly, formats=("onnx",), stage="precision", backends=("onnxruntime",),
          objectives=("size",),
          summary="ONNX Runtime MatMulNBits: 4-bit weights in blocks for MatMul")
def int4_weight_only(model, config: Int4WeightOnly, ctx: PassContext) -> PassOutput:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    source = require_onnx(model, "int4-weight-only")
    ctx.say("quantizing weights to 4 bits")
    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), block_size=config.block_size,
                                     is_symmetric=config.symmetric, accuracy_level=config.accuracy_level)
    quantizer.process()
    target = ctx.workdir / "int4.onnx"
    quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
    return PassOutput(as_onnx(model, target),
                      notes=[f"4-bit MatMul weights, block {config.block_size}, accuracy level {config.accuracy_level}"])


@dataclass(frozen=True)
class Fp16Onnx(Checked):
    keep_io_types: bool = param(True, "inputs and outputs stay float32; casts are inserted inside")
    op_block_list: tuple[str, ...] = param((), "operator types kept in float32 besides ONNX Runtime's defaults")


@register("fp16", Fp16Onnx, formats=("onnx",), stage="precision", backends=("onnxruntime",), objectives=("size",),
          summary="ONNX graph in float16, float32 fallback where an operator needs it")
def fp16(model, config: Fp16Onnx, ctx: PassContext) -> PassOutput:
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    source = require_onnx(model, "fp16")
    ctx.say("converting to float16")
    converted = convert_float_to_float16(onnx.load(str(source)), keep_io_types=config.keep_io_types,
                                         op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(config.op_block_list))
    target = ctx.workdir / "fp16.onnx"
    onnx.save(converted, str(target))
    return PassOutput(as_onnx(model, target), notes=["float16 weights and compute, float32 inputs/outputs"])

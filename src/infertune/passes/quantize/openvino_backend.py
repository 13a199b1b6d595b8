"""NNCF post-training int8 quantization of an OpenVINO model (read from ONNX), saved as OpenVINO IR."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from infertune.passes.onnx_utils import require_onnx, sample_batches
from infertune.passes.registry import (INT8_ISA, SATURATES, Checked, param, PassContext, PassOutput, SearchFacts,
                                      int8_saturates, register)


@dataclass(frozen=True)
class Int8Nncf(Checked):
    model_type: str = param("auto", "transformer enables NNCF's transformer scheme; auto picks it for text models",
                            choices=("auto", "transformer", "default"))
    preset: str = param("mixed", "performance (symmetric activations) or mixed (asymmetric activations)",
                        choices=("mixed", "performance"), search=("mixed", "performance"))
    smooth_quant_alpha: float | None = param(None, "SmoothQuant alpha for MatMul: None keeps NNCF's default, "
                                                   "a negative value turns SmoothQuant off", search=(None, 0.5))
    subset_size: int = param(300, "calibration samples, from the calibration split only", low=1)
    fast_bias_correction: bool = param(True, "NNCF's fast bias correction (else the slower full one)")
    float_attention: bool = param(False, "leave float the matmuls of two activations (attention's scores and "
                                         "context), which NNCF quantizes by default; the weights' matmuls stay int8",
                                  search=(False, True))
    overflow_fix: str = param("auto", "NNCF's overflow fix: enable (7-bit weights in every layer), first_layer_only, "
                                      "disable; auto: enable where 8-bit products saturate this CPU's int8 kernels "
                                      "(x86 without VNNI, registry.int8_saturates), else NNCF's first_layer_only",
                              choices=("auto", "enable", "first_layer_only", "disable"))


def nncf_candidates(facts: SearchFacts) -> tuple[Int8Nncf, ...]:
    """What the search tries of NNCF int8: its defaults, and where the CPU has int8 matmul instructions also
    symmetric activations with attention left float. On AMX, OpenVINO runs symmetric int8 activations on a faster
    kernel than asymmetric ones, and its attention subgraph ran faster in float than in int8 (MiniLM, 32 held-out
    sentences padded to 43 tokens: fully connected layers 15.8 against 18.9 ms, attention 13.6 against 16.3 ms; the
    whole model 1.13x at batch 32 in benchmarks/passes.py; docs/benchmarks.md)."""
    fast = (Int8Nncf(preset="performance", float_attention=True),) if set(INT8_ISA) & facts.isa else ()
    return (Int8Nncf(),) + fast


@register("int8-nncf", Int8Nncf, formats=("onnx",), stage="precision", needs=("calibration",),
          backends=("openvino",), accelerated_by=INT8_ISA, candidates=nncf_candidates,
          summary="NNCF int8 for OpenVINO, calibrated on the calibration split (transformer scheme, SmoothQuant)")
def int8_nncf(model, config: Int8Nncf, ctx: PassContext) -> PassOutput:
    from infertune.quiet import quiet_third_party_logs

    quiet_third_party_logs()
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters, AdvancedSmoothQuantParameters,
                                                       OverflowFix)

    from infertune.backends.openvino import port_name

    source = require_onnx(model, "int8-nncf")
    split = ctx.require("calibration", "int8-nncf needs calibration data: pass --data, or use int8-dynamic")
    batches = sample_batches(model, split, count=config.subset_size, batch=1)
    ov_model = ov.Core().read_model(str(source))
    names = [port_name(port, model.signature.input_names) for port in ov_model.inputs]
    dataset = nncf.Dataset([{n: b[n] for n in names} for b in batches])
    transformer = config.model_type == "transformer" or (config.model_type == "auto" and model.is_text)
    overflow_fix = config.overflow_fix
    if overflow_fix == "auto":
        overflow_fix = "enable" if int8_saturates() else "first_layer_only"
    advanced = AdvancedQuantizationParameters(overflow_fix=OverflowFix(overflow_fix))
    if config.smooth_quant_alpha is not None:
        advanced = AdvancedQuantizationParameters(
            overflow_fix=OverflowFix(overflow_fix),
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=config.smooth_quant_alpha))
    preset = nncf.QuantizationPreset.MIXED if config.preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE
    float_matmuls = activation_matmuls(ov_model) if config.float_attention else []
    ignored = nncf.IgnoredScope(names=float_matmuls) if float_matmuls else None
    ctx.say(f"NNCF calibration on {len(batches)} samples")
    quantized = nncf.quantize(ov_model, dataset, preset=preset, subset_size=len(batches),
                              fast_bias_correction=config.fast_bias_correction,
                              model_type=nncf.ModelType.TRANSFORMER if transformer else None,
                              advanced_parameters=advanced, ignored_scope=ignored)
    target = ctx.workdir / "int8-nncf.xml"
    ov.save_model(quantized, str(target))
    new = dataclasses.replace(model, module=None, onnx_path=None, ir_path=target.resolve())
    kept = f", {len(float_matmuls)} matmuls of two activations left float" if config.float_attention else ""
    fix = f"; 7-bit weights (NNCF's overflow fix): {SATURATES}" if config.overflow_fix == "auto" and \
        overflow_fix == "enable" else ""
    return PassOutput(new, notes=[f"NNCF int8 ({'transformer' if transformer else 'default'} scheme, "
                                  f"{config.preset} preset{kept}) on {len(batches)} calibration samples{fix}"])


def activation_matmuls(ov_model) -> list[str]:
    """The names of the MatMuls in an OpenVINO model neither of whose inputs is computed from constants alone:
    attention's scores (Q K^T) and context (softmax V) in a transformer; none in a model whose every matmul has a
    weight."""
    constant: dict[str, bool] = {}  # by the op's unique name
    names = []
    for op in ov_model.get_ordered_ops():  # topological: an op's inputs come before it
        kind = op.get_type_name()
        sources = [value.get_node() for value in op.input_values()]
        constant[op.get_name()] = kind == "Constant" or (
            bool(sources) and kind not in ("Parameter", "ReadValue") and all(constant[s.get_name()] for s in sources))
        if kind == "MatMul" and not any(constant[s.get_name()] for s in sources):
            names.append(op.get_friendly_name())
    return names

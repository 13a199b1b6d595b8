"""NNCF post-training int8 quantization of an OpenVINO model (read from ONNX), saved as OpenVINO IR."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from infertune.passes.onnx_utils import require_onnx, sample_batches
from infertune.passes.registry import INT8_ISA, Checked, param, PassContext, PassOutput, register


@dataclass(frozen=True)
class Int8Nncf(Checked):
    model_type: str = param("auto", "transformer enables NNCF's transformer scheme; auto picks it for text models",
                            choices=("auto", "transformer", "default"))
    preset: str = param("mixed", "performance (symmetric activations) or mixed (asymmetric activations)",
                        choices=("mixed", "performance"))
    smooth_quant_alpha: float | None = param(None, "SmoothQuant alpha for MatMul: None keeps NNCF's default, "
                                                   "a negative value turns SmoothQuant off", search=(None, 0.5))
    subset_size: int = param(300, "calibration samples, from the calibration split only", low=1)
    fast_bias_correction: bool = param(True, "NNCF's fast bias correction (else the slower full one)")


@register("int8-nncf", Int8Nncf, formats=("onnx",), stage="precision", needs=("calibration",),
          backends=("openvino",), accelerated_by=INT8_ISA,
          summary="NNCF int8 for OpenVINO, calibrated on the calibration split (transformer scheme, SmoothQuant)")
def int8_nncf(model, config: Int8Nncf, ctx: PassContext) -> PassOutput:
    from infertune.quiet import quiet_third_party_logs

    quiet_third_party_logs()
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    from infertune.backends.openvino import port_name

    source = require_onnx(model, "int8-nncf")
    split = ctx.require("calibration", "int8-nncf needs calibration data: pass --data, or use int8-dynamic")
    batches = sample_batches(model, split, count=config.subset_size, batch=1)
    ov_model = ov.Core().read_model(str(source))
    names = [port_name(port, model.signature.input_names) for port in ov_model.inputs]
    dataset = nncf.Dataset([{n: b[n] for n in names} for b in batches])
    transformer = config.model_type == "transformer" or (config.model_type == "auto" and model.is_text)
    advanced = AdvancedQuantizationParameters()
    if config.smooth_quant_alpha is not None:
        advanced = AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=config.smooth_quant_alpha))
    preset = nncf.QuantizationPreset.MIXED if config.preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE
    ctx.say(f"NNCF calibration on {len(batches)} samples")
    quantized = nncf.quantize(ov_model, dataset, preset=preset, subset_size=len(batches),
                              fast_bias_correction=config.fast_bias_correction,
                              model_type=nncf.ModelType.TRANSFORMER if transformer else None,
                              advanced_parameters=advanced)
    target = ctx.workdir / "int8-nncf.xml"
    ov.save_model(quantized, str(target))
    new = dataclasses.replace(model, module=None, onnx_path=None, ir_path=target.resolve())
    return PassOutput(new, notes=[f"NNCF int8 ({'transformer' if transformer else 'default'} scheme, "
                                  f"{config.preset} preset) on {len(batches)} calibration samples"])

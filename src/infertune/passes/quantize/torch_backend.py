"""torchao int8 for PyTorch: int8 dynamic activations and int8 weights, meant for torch.compile with freezing
(eager it is slower than fp32, which the measurement shows)."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from infertune.errors import UnsupportedModelError
from infertune.passes.registry import INT8_ISA, Checked, param, PassContext, PassOutput, register


@dataclass(frozen=True)
class Int8Torchao(Checked):
    weight_only: bool = param(False, "int8 weights only (activations stay float)", search=(False, True))


@register("int8-torchao", Int8Torchao, formats=("torch",), stage="precision",
          backends=("torch-compile",), accelerated_by=INT8_ISA,
          summary="torchao quantize_ with int8 dynamic activations and int8 weights (run under torch-compile)")
def int8_torchao(model, config: Int8Torchao, ctx: PassContext) -> PassOutput:
    from infertune.quiet import quiet_third_party_logs

    quiet_third_party_logs()
    try:
        from torchao.quantization import (Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig,
                                          quantize_)
    except ImportError as e:
        raise UnsupportedModelError("int8-torchao needs torchao: pip install torchao") from e
    module = copy.deepcopy(model.module).eval()
    quantize_(module, Int8WeightOnlyConfig() if config.weight_only else Int8DynamicActivationInt8WeightConfig())
    return PassOutput(dataclasses.replace(model, module=module),
                      notes=["torchao int8 " + ("weight-only" if config.weight_only else
                                                "dynamic activations + int8 weights")
                             + "; fast under torch-compile with freezing, slow in eager"])

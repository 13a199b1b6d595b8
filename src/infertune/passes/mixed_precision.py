"""Mixed precision by sensitivity: measure how much each quantizable layer alone costs on a validation
split (never the held-out one), then keep the worst layers in float until the budget is met."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infertune.passes.onnx_utils import as_onnx, cosine_rows, require_onnx, run_onnx, sample_batches
from infertune.passes.quantize.onnx_backend import Int8Dynamic, Int8Static, int8_dynamic, int8_static
from infertune.passes.registry import INT8_ISA, Checked, param, PassContext, PassOutput, register


@dataclass(frozen=True)
class MixedPrecisionInt8(Checked):
    base: str = param("int8-dynamic", "the int8 pass whose layers are ranked: int8-dynamic or int8-static",
                      choices=("int8-dynamic", "int8-static"))
    per_channel: bool = param(True, "per-channel weight scales for the quantized layers")
    max_drop: float = param(0.01, "largest metric drop on the validation split (1 - mean cosine, or "
                                  "1 - top-1 agreement) the result may have")
    validation_samples: int = param(128, "validation samples from the calibration split")
    op_types: tuple[str, ...] = param(("MatMul", "Attention", "Gemm", "Conv"), "operator types considered")
    float_outputs: bool = param(False, "int8-static only: MatMul / Gemm outputs left float (see int8-static)")


def quantizable_nodes(path: Path, op_types: tuple[str, ...]) -> list[str]:
    """Nodes of the given types that hold a weight (an initializer input): what int8 passes quantize."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    return [node.name for node in graph.node if node.op_type in op_types and any(i in weights for i in node.input)]


def _drop(reference: list[np.ndarray], outputs: list[np.ndarray], task: str) -> float:
    if task == "classification":
        from infertune.data.metrics import top1_agreement

        return 1.0 - top1_agreement(np.concatenate(reference), np.concatenate(outputs))
    return float(1.0 - cosine_rows(reference, outputs).mean())


@register("int8-mixed", MixedPrecisionInt8, formats=("onnx",), stage="precision", needs=("calibration",),
          backends=("onnxruntime",), accelerated_by=INT8_ISA, searched=False,
          summary="int8 with the most sensitive layers kept in float until the validation drop fits the budget")
def int8_mixed(model, config: MixedPrecisionInt8, ctx: PassContext) -> PassOutput:
    source = require_onnx(model, "int8-mixed")
    split = ctx.require("calibration", "int8-mixed needs validation data to rank layers: pass --data, "
                                       "or use int8-dynamic")
    batches = sample_batches(model, split, count=config.validation_samples, batch=8)
    reference = run_onnx(source, batches)
    nodes = quantizable_nodes(source, config.op_types)

    def quantized(name: str, **selection) -> Path:
        sub = dataclasses.replace(ctx, workdir=ctx.workdir / name)
        sub.workdir.mkdir(parents=True, exist_ok=True)
        if config.base == "int8-dynamic":
            cfg = Int8Dynamic(per_channel=config.per_channel, op_types=config.op_types, **selection)
            return Path(int8_dynamic(model, cfg, sub).model.onnx_path)
        cfg = Int8Static(per_channel=config.per_channel, op_types=config.op_types,
                         float_outputs=config.float_outputs, **selection)
        return Path(int8_static(model, cfg, sub).model.onnx_path)

    def discard(name: str) -> None:  # a probe's graph, once measured: one per layer would fill the disk
        shutil.rmtree(ctx.workdir / name, ignore_errors=True)

    ctx.say("quantizing every layer")
    all_int8 = quantized("all")
    full_drop = _drop(reference, run_onnx(all_int8, batches), model.task)
    if full_drop <= config.max_drop:
        return PassOutput(as_onnx(model, all_int8), notes=[f"all {len(nodes)} layers int8: validation drop "
                                                       f"{full_drop:.4f} is within {config.max_drop}"],
                          details={"sensitivity": [], "full_drop": full_drop, "kept_float": []})
    discard("all")
    sensitivity = []
    for i, node in enumerate(nodes):
        ctx.say(f"sensitivity {i + 1}/{len(nodes)}: {node}")
        alone = [n for n in nodes if n != node]
        drop = _drop(reference, run_onnx(quantized(f"only-{i}", exclude=tuple(alone)), batches), model.task)
        discard(f"only-{i}")
        sensitivity.append({"layer": node, "drop_alone": drop})
    sensitivity.sort(key=lambda row: row["drop_alone"], reverse=True)
    kept: list[str] = []
    drop = full_drop
    path = None
    previous = None
    for count in _growing(len(nodes)):
        if previous is not None:
            discard(previous)  # that count missed the budget
        kept = [row["layer"] for row in sensitivity[:count]]
        ctx.say(f"keeping {count} layers in float")
        previous = f"keep-{count}"
        path = quantized(previous, exclude=tuple(kept))
        drop = _drop(reference, run_onnx(path, batches), model.task)
        if drop <= config.max_drop:
            break
    notes = [f"quantizing all {len(nodes)} layers dropped {full_drop:.4f} on validation; keeping the "
             f"{len(kept)} most sensitive in float gives {drop:.4f} (budget {config.max_drop})"]
    if drop > config.max_drop:
        notes.append("the budget was not met even with every layer in float: no int8 gain here")
    return PassOutput(as_onnx(model, path), notes=notes,
                      details={"sensitivity": sensitivity, "full_drop": full_drop, "kept_float": kept,
                               "validation_drop": drop})


def _growing(total: int):
    """1, 2, 4, 8, ... up to every layer: few re-quantizations to find how many must stay float."""
    count = 1
    while count < total:
        yield count
        count *= 2
    yield total

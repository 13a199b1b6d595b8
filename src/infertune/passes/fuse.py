"""Graph fusion: conv + batch-norm folding in torch; ONNX Runtime's transformer fusions and constant folding
on ONNX graphs, validated numerically and saved so they are not redone at every load."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from infertune.errors import ExportError, PassError
from infertune.passes.onnx_utils import as_onnx, cosine_rows, require_onnx, run_onnx, sample_batches
from infertune.passes.registry import Checked, param, PassContext, PassOutput, register


@dataclass(frozen=True)
class FoldBatchNorm(Checked):
    """Fold each eval-mode BatchNorm into the convolution before it (torch.fx)."""


@register("fold-bn", FoldBatchNorm, formats=("torch",), needs=("convolutions",), backends=("torch", "torch-compile"),
          summary="fold BatchNorm into the preceding conv (torch)")
def fold_batchnorm(model, config: FoldBatchNorm, ctx: PassContext) -> PassOutput:
    import copy

    import torch
    from torch.fx.experimental.optimization import fuse

    before = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.module.modules())
    try:
        folded = fuse(copy.deepcopy(model.module).eval(), inplace=True)
    except Exception as e:
        raise PassError(f"fold-bn could not trace '{model.name}' with torch.fx ({type(e).__name__}: "
                                    f"{e})") from e
    after = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    return PassOutput(dataclasses.replace(model, module=folded),
                      notes=[f"folded {before - after} of {before} BatchNorm layers into convolutions"])


@dataclass(frozen=True)
class OrtFusion(Checked):
    model_type: str = param("bert", "ONNX Runtime transformer optimizer model type (bert, gpt2, ...); "
                                    "'none' runs only ONNX Runtime's generic graph optimizations")
    num_heads: int = param(0, "attention heads; 0 takes the model's own figure, or lets ONNX Runtime detect it")
    hidden_size: int = param(0, "hidden size; 0 takes the model's own figure, or lets ONNX Runtime detect it")
    save_ort_format: bool = param(False, "also bake ONNX Runtime's level-'extended' optimizations into the file")
    min_cosine: float = param(0.9999, "smallest row cosine against the unfused graph that is accepted", low=0.0,
                              high=1.0)


@register("ort-fusion", OrtFusion, formats=("onnx",), needs=("transformer",), backends=("onnxruntime",), prepares=True,
          summary="ONNX Runtime fusions (Attention, BiasGelu, EmbedLayerNorm; SkipLayerNorm at load, where the "
                  "onnxruntime setting skip_layer_norm asks), constant folding")
def ort_fusion(model, config: OrtFusion, ctx: PassContext) -> PassOutput:
    source = require_onnx(model, "ort-fusion")
    target = ctx.workdir / "fused.onnx"
    notes: list[str] = []
    fused = "fused nothing"
    if config.model_type != "none":
        import onnx
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        from infertune.model.onnx_graph import attention_facts
        from infertune.passes.attention_graph import canonical_attention

        facts = attention_facts(onnx.load(str(source), load_external_data=False).graph)
        heads = config.num_heads or int(model.meta.get("num_heads") or facts.num_heads or 0)
        hidden = config.hidden_size or int(model.meta.get("hidden_size") or facts.hidden_size or 0)
        graph = source
        if facts.blocks:
            ctx.say("rewriting attention into ONNX Runtime's patterns")
            graph = ctx.workdir / "canonical.onnx"
            changes = canonical_attention(source, graph)
            if changes:
                notes.append("before fusing: " + ", ".join(changes))
        ctx.say("fusing transformer patterns")
        options = FusionOptions(config.model_type)
        # Add + LayerNormalization stay apart: the onnxruntime backend's `skip_layer_norm` setting decides whether
        # ONNX Runtime fuses them when it loads the graph (its SkipLayerNormalization CPU kernel is the slow one on
        # this project's machines, docs/benchmarks.md)
        options.enable_skip_layer_norm = False
        optimized = optimize_model(str(graph), model_type=config.model_type, opt_level=0, num_heads=heads,
                                   hidden_size=hidden, optimization_options=options)
        stats = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        optimized.save_model_to_file(str(target))
        if graph != source:  # the rewritten copy fed the optimizer only: a model's size on disk, not kept
            graph.unlink(missing_ok=True)
            graph.with_name(graph.name + ".data").unlink(missing_ok=True)
        fused = "fused " + (", ".join(f"{k} x{v}" for k, v in sorted(stats.items())) or "nothing")
        notes.insert(0, fused)
        if facts.blocks:
            done = stats.get("Attention", 0) + stats.get("MultiHeadAttention", 0)
            shape = f"{heads} heads, hidden size {hidden}" if heads and hidden else "head count unknown"
            notes.append(f"attention blocks fused: {done} of {facts.blocks} found in the graph ({shape})"
                         + ("" if done or heads else "; pass --num-heads and --hidden-size"))
    else:
        target.write_bytes(source.read_bytes())
    if config.save_ort_format:
        _bake_ort_optimizations(target)
        notes.append("ONNX Runtime extended optimizations saved into the graph")
    batches = sample_batches(model, ctx.split("calibration"), count=16)
    cosine = cosine_rows(run_onnx(source, batches), run_onnx(target, batches))
    if cosine.min() < config.min_cosine:
        raise ExportError(f"ort-fusion changed the outputs of '{model.name}': min cosine {cosine.min():.6f} "
                          f"< {config.min_cosine}")
    notes.append(f"validated: min cosine {cosine.min():.6f} against the unfused graph")
    return PassOutput(as_onnx(model, target), notes=notes, details={"fused": fused})


def _bake_ort_optimizations(path: Path) -> None:
    import onnxruntime as ort

    from infertune.backends.onnxruntime import disabled_optimizers
    from infertune.backends.settings import OnnxRuntimeSettings

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    staged = path.with_name(path.stem + ".ort-opt.onnx")
    options.optimized_model_filepath = str(staged)
    ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"],
                         disabled_optimizers=disabled_optimizers(OnnxRuntimeSettings()))  # as the backend loads
    staged.replace(path)

"""Which candidates to try, cheapest and likeliest first, so a short time budget still returns a good answer:
graph-optimised fp32 runtimes, then int8 and bf16, then pruning and distillation that need training, and last
the passes that train to fit the budget (pruning to the budget, quantization-aware training), each bounded in
training time by the search's time budget."""

from __future__ import annotations

from infertune.search.recipe import Recipe


def baseline_recipe(model) -> Recipe:
    """The user's model as given: torch eager fp32, or ONNX Runtime fp32 for an ONNX file."""
    return Recipe(backend="torch") if model.format == "torch" else Recipe(backend="onnxruntime")


TRAINING_SECONDS = 300.0  # a trained candidate's training, at most, when the search has no time budget
TRAINING_SHARE = 0.25     # ... and at most this share of the search's time budget when it has one


def training_seconds(time_budget: float | None) -> float:
    """How long one trained candidate may train."""
    return TRAINING_SECONDS if time_budget is None else max(1.0, min(TRAINING_SECONDS, time_budget * TRAINING_SHARE))


def candidate_recipes(model, *, has_calibration: bool, has_training: bool, max_drop: float = 0.01,
                      time_budget: float | None = None, isa: tuple[str, ...] | None = None) -> list[Recipe]:
    """The candidates in the order they are tried. `max_drop` is the user's budget (pruning to the budget keeps
    half of it on the validation split, so the held-out verdict has room); `time_budget` bounds training. Among
    the lower-precision candidates, what this CPU's ISA (`isa`, read from the machine by default) accelerates
    comes first; with AMX int8, transformers also get static int8 QDQ with uint8 activations and int8 weights,
    the layout ONNX Runtime's AMX kernel runs."""
    from infertune.passes.distill import Distill
    from infertune.passes.export import ExportOnnx
    from infertune.passes.fuse import FoldBatchNorm, OrtFusion
    from infertune.passes.prune import StructuredPrune
    from infertune.passes.prune_budget import PruneToBudget
    from infertune.passes.quantize.qat import Qat
    from infertune.passes.quantize.onnx_backend import Int8Dynamic, Int8Static
    from infertune.passes.quantize.openvino_backend import Int8Nncf
    from infertune.passes.quantize.torch_backend import Int8Torchao

    torch_model = model.format == "torch"
    transformer = bool(model.meta.get("attention_blocks")) or "num_heads" in model.meta or model.is_text
    onnx = (ExportOnnx(),) if torch_model else ()
    fused = onnx + ((OrtFusion(),) if transformer else ())
    recipes: list[Recipe] = []
    # 1. fp32 on faster runtimes: no accuracy risk, cheap to build
    recipes.append(Recipe(passes=fused, backend="onnxruntime"))
    recipes.append(Recipe(passes=onnx, backend="openvino"))
    if torch_model:
        if not transformer:
            recipes.append(Recipe(passes=(FoldBatchNorm(),), backend="torch"))
        recipes.append(Recipe(backend="torch-compile"))
    # 2. lower precision: int8 and bf16, what this CPU accelerates first
    isa = set(_machine_isa() if isa is None else isa)
    low = [Recipe(passes=fused + (Int8Dynamic(),), backend="onnxruntime"),
           Recipe(passes=onnx, backend="openvino", options=(("precision", "bf16"),))]
    if torch_model:
        low.append(Recipe(backend="torch", options=(("precision", "bf16"),)))
    if has_calibration:
        low.append(Recipe(passes=onnx + (Int8Nncf(),), backend="openvino"))
        if not transformer or "amx_int8" in isa:
            low.append(Recipe(passes=fused + (Int8Static(activation_type="quint8"),), backend="onnxruntime"))
    if torch_model:
        low.append(Recipe(passes=(Int8Torchao(),), backend="torch-compile"))
    recipes += sorted(low, key=lambda r: not accelerated(r, isa))  # stable: the order above within each
    # 3. structure changes that need training
    if torch_model and has_training:
        recipes.append(Recipe(passes=(StructuredPrune(amount=0.5, fine_tune_epochs=10),) + onnx,
                              backend="onnxruntime"))
        if not transformer:
            recipes.append(Recipe(passes=(Distill(width=0.25, epochs=30),) + onnx, backend="onnxruntime"))
    # 4. passes that train their way into the budget: the dearest to build, so last
    if torch_model and has_training:
        seconds = training_seconds(time_budget)
        recipes.append(Recipe(passes=(PruneToBudget(max_drop=max_drop / 2, seconds=seconds),) + onnx,
                              backend="onnxruntime"))
        if has_calibration:
            recipes.append(Recipe(passes=(Qat(seconds=seconds, lr=2e-5 if transformer else 1e-4),),
                                  backend="onnxruntime"))
    base = baseline_recipe(model)  # an .onnx file's plain ONNX Runtime is the baseline itself, not a candidate
    return [r for r in recipes if r.to_dict() != base.to_dict()]


def pass_variants(recipe: Recipe) -> list[Recipe]:
    """The refine stage's candidates from a recipe's passes: each field a pass declares a search space for
    (`param(search=...)`: an int8 calibration method, a pruning amount, an exporter, ...), one at a time. These
    may change the outputs, so each is judged against the budget like any candidate."""
    import dataclasses

    from infertune.params import search_space

    variants = []
    for index, config in enumerate(recipe.passes):
        for name, values in search_space(type(config)).items():
            for value in values:
                if value != getattr(config, name):
                    changed = dataclasses.replace(config, **{name: value})
                    variants.append(dataclasses.replace(
                        recipe, passes=recipe.passes[:index] + (changed,) + recipe.passes[index + 1:]))
    return variants


def accelerated(recipe: Recipe, isa: set[str]) -> bool:
    """Whether this CPU has the instructions that make the recipe's lower precision fast: a bf16 precision
    setting on AMX or AVX-512 BF16, or a pass that declares `accelerated_by` (int8: AMX, VNNI)."""
    from infertune.passes.registry import BF16_ISA, entry_for

    if dict(recipe.options).get("precision") == "bf16":
        return bool(isa & set(BF16_ISA))
    return any(isa & set(entry_for(config).accelerated_by) for config in recipe.passes)


def _machine_isa() -> tuple[str, ...]:
    from infertune.bench.hardware import fingerprint

    return tuple(fingerprint().get("isa", ()))


def mixed_precision_fallback(recipe: Recipe, max_drop: float) -> Recipe | None:
    """For an int8 candidate over budget: the same graph with int8-mixed (sensitive layers kept float)."""
    from infertune.passes.mixed_precision import MixedPrecisionInt8
    from infertune.passes.quantize.onnx_backend import Int8Dynamic, Int8Static

    for index, config in enumerate(recipe.passes):
        if isinstance(config, (Int8Dynamic, Int8Static)):
            base = "int8-dynamic" if isinstance(config, Int8Dynamic) else "int8-static"
            # the validation budget is kept under the user's, so the held-out verdict has room
            mixed = MixedPrecisionInt8(base=base, max_drop=max_drop / 2)
            return Recipe(passes=recipe.passes[:index] + (mixed,) + recipe.passes[index + 1:],
                          backend=recipe.backend, options=recipe.options)
    return None


def setting_variants(recipe: Recipe) -> list[Recipe]:
    """The refine stage's candidates for a built recipe: its backend's runtime settings, one at a time, over the
    values the settings class declares (`param(search=...)`: intra-op threads from 1 to the usable cores, ONNX
    Runtime spinning and graph level, OpenVINO hint and streams, torch.compile mode and freezing). The outputs
    stay the same, so speed alone decides; a setting added to a backend's class is tried with no change here."""
    from infertune.backends import BACKENDS, make_backend_settings
    from infertune.params import search_space
    from infertune.search.recipe import with_options

    entry = BACKENDS.get(recipe.backend)
    if entry is None:
        return []
    current = make_backend_settings(recipe.backend, **recipe.backend_options)
    variants = []
    for name, values in search_space(entry.settings).items():
        if name in recipe.backend_options:
            continue  # the recipe chose it on purpose
        for value in values:
            if value != getattr(current, name):
                variants.append(with_options(recipe, **{name: value}))
    return variants

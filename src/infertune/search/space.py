"""Which candidates to try, cheapest and likeliest first, so a short time budget still returns a good answer:
graph-optimised fp32 runtimes, then int8 and bf16, then pruning and distillation that need training, and last
the passes that train to fit the budget (pruning to the budget, quantization-aware training), each bounded in
training time by the search's time budget. The candidates are composed from what the pass registry and the
backends' settings declare: a pass registered with `searched=True` is tried with no change here."""

from __future__ import annotations

import dataclasses

from infertune.errors import ConfigError
from infertune.search.recipe import Recipe


def baseline_recipe(model) -> Recipe:
    """The user's model as given: torch eager fp32, or ONNX Runtime fp32 for an ONNX file."""
    return Recipe(backend="torch") if model.format == "torch" else Recipe(backend="onnxruntime")


TRAINING_SECONDS = 300.0  # a trained candidate's training, at most, when the search has no time budget
TRAINING_SHARE = 0.25     # ... and at most this share of the search's time budget when it has one


def training_seconds(time_budget: float | None) -> float:
    """How long one trained candidate may train."""
    return TRAINING_SECONDS if time_budget is None else max(1.0, min(TRAINING_SECONDS, time_budget * TRAINING_SHARE))


GROUPS = ("fp32", "precision", "structure", "to budget")  # tried in this order
DEFAULT_BACKEND = "onnxruntime"  # runs a pass's output when the pass names no backend


def candidate_recipes(model, *, has_calibration: bool, has_training: bool, max_drop: float = 0.01,
                      time_budget: float | None = None, isa: tuple[str, ...] | None = None,
                      objective: str = "latency") -> list[Recipe]:
    """The candidates in the order they are tried, composed from what the passes and backends declare: each
    registered pass with `searched=True` that takes this model (exported first where it takes ONNX), whose needs
    this model and data meet and whose objectives include `objective`, with the configs its entry's `candidates`
    gives (its defaults otherwise), run on the first backend it names; each CPU backend that runs the model at its
    defaults (fp32), and with each settings value it declares a candidate (`param(candidates=...)`: bf16) unless
    this CPU would emulate it (`emulated`); each lower-precision pass also with those values where this CPU
    accelerates them (int8 with bf16 for the rest).

    Groups, in order: fp32 (runtimes and graph passes), lower precision, structure changes (those that train, for
    latency), and the passes that train their way into the budget (`to_budget`). Within fp32 and precision,
    runtimes of the ONNX graph come first; among the lower-precision candidates, what this CPU's ISA (`isa`, read
    from the machine by default) accelerates comes first. `max_drop` is the user's budget and `time_budget` bounds
    training (`training_seconds`): the passes' `candidates` read both. The baseline itself is never a candidate."""
    from infertune.passes.registry import SearchFacts, in_search_order

    isa = frozenset(_machine_isa() if isa is None else isa)
    facts = SearchFacts(format=model.format, met=needs_met(model, has_calibration=has_calibration,
                                                           has_training=has_training),
                        isa=isa, objective=objective, max_drop=max_drop, training_seconds=training_seconds(time_budget))
    entries = [e for e in in_search_order()
               if e.searched and objective in e.objectives and set(e.needs) <= facts.met]
    preparing = [e for e in entries if e.prepares]
    groups: dict[str, list[Recipe]] = {group: [] for group in GROUPS}
    for entry in entries:
        if entry.stage == "export" or entry.prepares:
            continue  # a conversion or a preparation: a step of other candidates, never one of its own
        for config in entry.candidates(facts) if entry.candidates else (entry.config(),):
            backend = entry.backends[0] if entry.backends else DEFAULT_BACKEND
            recipe = _compose(model.format, backend, preparing, entry, config)
            groups[_group(entry)].append(recipe)
            if recipe is not None and _group(entry) == "precision":
                groups["precision"] += _rest_lower(recipe, isa)
    for backend, options in _backend_candidates(model.format):
        recipe = _compose(model.format, backend, preparing, options=options)
        if recipe is not None and not emulated(recipe, isa):
            groups["precision" if options else "fp32"].append(recipe)
    # stable sorts: among equals, the order above (passes in the registry's order, then the backends)
    ordered = sorted(filter(None, groups["fp32"]), key=lambda r: not _runs_onnx(r))
    ordered += sorted(filter(None, groups["precision"]), key=lambda r: (not accelerated(r, isa), not _runs_onnx(r)))
    ordered += filter(None, groups["structure"] + groups["to budget"])
    return _once(ordered, without=baseline_recipe(model))  # an .onnx file's plain ONNX Runtime is the baseline


def _once(recipes: list[Recipe], *, without: Recipe) -> list[Recipe]:
    """`recipes` less repeats and less `without`."""
    import json

    seen = {json.dumps(without.to_dict(), sort_keys=True, default=str)}
    found = []
    for recipe in recipes:
        key = json.dumps(recipe.to_dict(), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            found.append(recipe)
    return found


def needs_met(model, *, has_calibration: bool, has_training: bool) -> frozenset[str]:
    """Which of the passes' needs (registry.NEEDS) this model and its data meet."""
    met = {need for need, present in (("calibration", has_calibration), ("training", has_training),
                                      ("transformer", _is_transformer(model)),
                                      ("convolutions", _has_convolutions(model)),
                                      ("torch-layers", _has_torch_layers(model)),
                                      ("padded-sequences", _padded_sequences(model))) if present}
    return frozenset(met)


def _padded_sequences(model) -> bool:
    """Whether a batch of this model may be cut by length (backends/ragged.py)."""
    from infertune.backends.ragged import length_axes

    return length_axes(model.signature) is not None


def _is_transformer(model) -> bool:
    return bool(model.meta.get("attention_blocks")) or "num_heads" in model.meta or model.is_text


def _has_torch_layers(model, convolutions_only: bool = False) -> bool:
    if model.module is None:
        return False
    from torch import nn

    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d) + (() if convolutions_only else (nn.Linear,))
    return any(isinstance(m, kinds) for m in model.module.modules())


def _has_convolutions(model) -> bool:
    if model.module is not None:
        return _has_torch_layers(model, convolutions_only=True)
    if model.onnx_path is not None:
        import onnx

        graph = onnx.load(str(model.onnx_path), load_external_data=False).graph
        return any(node.op_type == "Conv" for node in graph.node)
    return False


def _group(entry) -> str:
    if entry.to_budget:
        return "to budget"
    if entry.stage == "structure" or "training" in entry.needs:
        return "structure"
    return "precision" if entry.stage == "precision" else "fp32"


def _rest_lower(recipe: Recipe, isa: frozenset[str]) -> list[Recipe]:
    """A lower-precision recipe run with each precision its backend declares a candidate (`param(candidates=...)`)
    that this CPU accelerates, for the operators the pass left in float: OpenVINO int8 with bf16 for the rest on
    AMX or AVX-512 BF16. None where the CPU would emulate it, which is only slower."""
    from infertune.backends import BACKENDS
    from infertune.params import candidate_values
    from infertune.search.recipe import with_options

    variants = [with_options(recipe, **{field: value})
                for field, values in candidate_values(BACKENDS[recipe.backend].settings).items()
                for value in values if field not in recipe.backend_options]
    return [variant for variant in variants if accelerated(variant, isa)]


def _backend_candidates(model_format: str) -> list[tuple[str, tuple[tuple[str, object], ...]]]:
    """(backend, options): each CPU backend that runs this format at its defaults, then with each value its
    settings class declares a first-stage candidate."""
    from infertune.backends import BACKENDS
    from infertune.params import candidate_values

    found = []
    for name, entry in BACKENDS.items():
        if entry.device == "cpu" and model_format in entry.formats:
            found.append((name, ()))
            found += [(name, ((field, value),)) for field, values in candidate_values(entry.settings).items()
                      for value in values]
    return found


def _compose(model_format: str, backend: str, preparing: list, entry=None, config=None,
             options: tuple = ()) -> Recipe | None:
    """A recipe running `config` (of `entry`; none: the bare backend) on `backend`: converted first where the pass
    takes another format, the passes that prepare this backend's graphs before a precision pass or the bare
    backend, and converted after where the backend runs ONNX (a torch model is exported in the recipe, where the
    export is validated and cached, not inside the backend). None when no conversion leads there."""
    from infertune.backends import BACKENDS

    passes: list = []
    current = model_format
    if entry is not None and current not in entry.formats:
        step = _converter(current, entry.formats)
        if step is None:
            return None
        passes.append(step.config())
        current = step.makes
    if entry is None:
        passes, current = _toward(backend, passes, current)
    if entry is None or (entry.stage == "precision" and getattr(config, "takes_prepared_graph", True)):
        passes += [p.config() for p in preparing if backend in p.backends and current in p.formats]
    if entry is not None:
        passes.append(config)
        passes, current = _toward(backend, passes, entry.makes or current)
    if current not in BACKENDS[backend].formats:
        return None
    return Recipe(passes=tuple(passes), backend=backend, options=options)


def _toward(backend: str, passes: list, current: str) -> tuple[list, str]:
    from infertune.backends import BACKENDS

    step = _converter(current, ("onnx",)) if "onnx" in BACKENDS[backend].formats and current != "onnx" else None
    return (passes + [step.config()], step.makes) if step is not None else (passes, current)


def _converter(source: str, targets: tuple[str, ...]):
    """The registered export pass from `source` to one of `targets`, or None."""
    from infertune.passes.registry import in_search_order

    return next((e for e in in_search_order() if e.stage == "export" and source in e.formats and e.makes in targets),
                None)


def _runs_onnx(recipe: Recipe) -> bool:
    """Whether the recipe's backend runs an ONNX graph: these come first, the likeliest winners on a CPU and the
    cheapest to build (torch.compile compiles for a while), so a short time budget still gets them."""
    from infertune.backends import BACKENDS

    return "onnx" in BACKENDS[recipe.backend].formats


def pass_variants(recipe: Recipe) -> list[Recipe]:
    """The refine stage's candidates from a recipe's passes: each field a pass declares a search space for
    (`param(search=...)`: an int8 calibration method, a pruning amount, an exporter, ...), one at a time. These
    may change the outputs, so each is judged against the budget like any candidate."""
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


def insertion_variants(recipe: Recipe, model_format: str, objective: str, met: frozenset[str]) -> list[Recipe]:
    """The refine stage's candidates that add a pass registered `inserted` (padding removal) to a recipe, before
    its first precision or structure pass, where that pass serves `objective`, its needs are `met` and it takes
    the format the recipe has there. These may change the outputs (an int8 pass after it sees other tensors), so
    each is judged against the budget like any candidate."""
    from infertune.passes.registry import entry_for, in_search_order

    variants = []
    for entry in in_search_order():
        if not entry.inserted or objective not in entry.objectives or not set(entry.needs) <= met:
            continue
        if any(isinstance(config, entry.config) for config in recipe.passes):
            continue
        current, at = model_format, len(recipe.passes)
        for index, config in enumerate(recipe.passes):
            step = entry_for(config)
            if step.stage in ("precision", "structure"):
                at = index
                break
            current = step.makes or current
        if current in entry.formats:
            variants.append(dataclasses.replace(recipe, passes=recipe.passes[:at] + (entry.config(),)
                                                + recipe.passes[at:]))
    return variants


def accelerated(recipe: Recipe, isa: set[str]) -> bool:
    """Whether this CPU has the instructions that make the recipe's lower precision fast: a bf16 precision
    setting on AMX or AVX-512 BF16, or a pass that declares `accelerated_by` (int8: AMX, VNNI)."""
    from infertune.passes.registry import BF16_ISA, entry_for

    if dict(recipe.options).get("precision") == "bf16":
        return bool(isa & set(BF16_ISA))
    return any(isa & set(entry_for(config).accelerated_by) for config in recipe.passes)


def emulated(recipe: Recipe, isa: set[str]) -> bool:
    """Whether the recipe asks its backend for a float precision this CPU has no instructions for (bf16 without
    AMX or AVX-512 BF16): torch then converts in software, about 1 GFLOP/s against 120 for fp32 on a 2-core Zen 3
    (a 2048 product takes 19 s), and OpenVINO ignores the hint and runs fp32 again. Never worth a trial."""
    return dict(recipe.options).get("precision") == "bf16" and not accelerated(recipe, isa)


def _machine_isa() -> tuple[str, ...]:
    from infertune.bench.hardware import cpu_isa

    return cpu_isa()


def mixed_precision_fallback(recipe: Recipe, max_drop: float) -> Recipe | None:
    """For an int8 candidate over budget: the same graph with int8-mixed (sensitive layers kept float)."""
    from infertune.passes.mixed_precision import MixedPrecisionInt8
    from infertune.passes.quantize.onnx_backend import Int8Dynamic, Int8Static

    for index, config in enumerate(recipe.passes):
        if isinstance(config, (Int8Dynamic, Int8Static)):
            base = "int8-dynamic" if isinstance(config, Int8Dynamic) else "int8-static"
            # the validation budget is kept under the user's, so the held-out verdict has room
            outputs = {"float_outputs": True} if getattr(config, "float_outputs", False) else {}
            mixed = MixedPrecisionInt8(base=base, max_drop=max_drop / 2, **outputs)
            return Recipe(passes=recipe.passes[:index] + (mixed,) + recipe.passes[index + 1:],
                          backend=recipe.backend, options=recipe.options)
    return None


def setting_variants(recipe: Recipe, needs: frozenset[str] | None = None,
                     objective: str | None = None) -> list[Recipe]:
    """The refine stage's candidates for a built recipe: its backend's runtime settings, one at a time, over the
    values the settings class declares (`param(search=...)`: intra-op threads from 1 to the usable cores, ONNX
    Runtime spinning and graph level, OpenVINO hint and streams, torch.compile mode and freezing). The outputs
    stay the same, so speed decides (ONNX Runtime's dynamic int8 cut `by_length` moves them a little: each variant
    is judged on its held-out outputs like any candidate); a setting added to a backend's class is tried with no
    change here.
    With `needs` (what the model meets) and `objective`, a setting that declares needs or objectives is tried only
    where they hold (OpenVINO's and ONNX Runtime's `by_length`: padded sequences, throughput)."""
    from infertune.backends import BACKENDS, make_backend_settings
    from infertune.params import search_space
    from infertune.search.recipe import with_options

    entry = BACKENDS.get(recipe.backend)
    if entry is None:
        return []
    current = make_backend_settings(recipe.backend, **recipe.backend_options)
    variants = []
    for name, values in search_space(entry.settings, met=needs, objective=objective).items():
        if name in recipe.backend_options:
            continue  # the recipe chose it on purpose
        for value in values:
            if value != getattr(current, name):
                variant = with_options(recipe, **{name: value})
                try:
                    make_backend_settings(recipe.backend, **variant.backend_options)
                except ConfigError:
                    continue  # a combination the backend refuses (OpenVINO split=2 on a recipe with streams=1)
                variants.append(variant)
    return variants

"""One registry of passes: a frozen dataclass config, and the function registered for its type.

    @register("int8-dynamic", formats=("onnx",))
    def int8_dynamic(model, config: Int8Dynamic, ctx: PassContext) -> PassOutput: ...

A config field carries its default, its meaning and its search space together (`param`), so the search
reads the space from the pass and never drifts from it. The entry says the rest of what the search needs (stage,
needs, backends, objectives, `searched`, and `candidates` for the configs it tries): a pass registered with
`searched=True` is among the search's candidates wherever its needs are met, with no change to the search.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from infertune.errors import ConfigError, UnsupportedModelError
from infertune.params import Checked, check, param, search_space  # noqa: F401  (param: the passes' field helper)

STAGES = ("export", "graph", "precision", "structure")
# torch-layers: a torch module with nn.Linear / nn.Conv layers, which the trained passes rewrite (a Keras model run
# on Keras' torch backend has none)
NEEDS = ("calibration", "training", "transformer", "convolutions", "torch-layers", "padded-sequences")
OBJECTIVES = ("latency", "throughput", "size")
INT8_ISA = ("amx_int8", "avx512_vnni", "avx_vnni")  # what makes int8 matmuls fast on a CPU
BF16_ISA = ("amx_bf16", "avx512_bf16")
# x86 int8 without VNNI or AMX: the u8 x s8 kernels multiply with vpmaddubsw, which sums each pair of products in
# int16, and 255 x 127 x 2 does not fit
SATURATING_ISA = ("avx2", "avx512bw")


SATURATES = "this CPU has no VNNI, and 8-bit products saturate its int8 kernels"  # the passes' notes say why


def int8_saturates(isa: tuple[str, ...] | frozenset[str] | None = None) -> bool:
    """Whether 8-bit int8 products saturate on this CPU (`isa`, read from the machine by default): x86 with AVX2 or
    AVX-512 but without VNNI or AMX int8, where ONNX Runtime's and OpenVINO's u8 x s8 kernels sum pairs of products
    in int16. There the int8 passes keep every pair inside it by default: 7-bit weights (ONNX Runtime's
    `reduce_range`, NNCF's overflow fix) or, where weights cannot change, 7-bit activations. On a 2-core Zen 3
    (AVX2, no VNNI) a tiny MLP's int8 dynamic graph kept a mean cosine of 0.982 to fp32 with 8-bit weights and
    0.9999 with 7-bit; a QAT graph's worst row fell to cosine 0.62 of the fake-quant model it was exported from.
    A graph quantized for 8 bits on a CPU with VNNI saturates in the same way when it is run on such a CPU."""
    if isa is None:
        from infertune.bench.hardware import cpu_isa

        isa = cpu_isa()
    found = set(isa)
    return bool(found & set(SATURATING_ISA)) and not found & set(INT8_ISA)


def check_config(name: str, config: Any) -> None:
    """Raise ConfigError naming a field whose value is outside its choices or range."""
    check(f"pass '{name}'", config)


@dataclass
class PassContext:
    """What a pass may use besides the model: data splits (never the held-out one) and a work folder."""

    workdir: Path
    dataset: Any = None          # infertune.data.Dataset, or None
    progress: Callable[[str], None] | None = None

    def split(self, name: str):
        if name == "heldout":
            raise ValueError("passes never see the held-out split: it is kept for the accuracy verdict")
        if self.dataset is None:
            return None
        return self.dataset.splits.get(name) or None

    def require(self, name: str, message: str):
        """The split, or UnsupportedModelError(message): the message says which flag or pass to use instead."""
        found = self.split(name)
        if found is None:
            raise UnsupportedModelError(message)
        return found

    def without_heldout(self, texts) -> tuple[str, ...]:
        """`texts` less any equal to a held-out text (case and spacing ignored): a pass that brings text of its
        own filters it here, without ever reading the held-out split."""
        heldout = self.dataset.splits.get("heldout") if self.dataset is not None else None
        if heldout is None or heldout.texts is None:
            return tuple(texts)
        from infertune.data.corpus import build_corpus_filter

        return build_corpus_filter(heldout.texts)(texts)

    def say(self, message: str) -> None:
        if self.progress:
            self.progress(message)


@dataclass
class PassOutput:
    model: Any                                        # the new Model; the input model is never changed
    notes: list[str] = field(default_factory=list)    # plain-language findings ("no speed-up on this hardware")
    details: dict[str, Any] = field(default_factory=dict)  # tables for the report (e.g. layer sensitivity)


@dataclass(frozen=True)
class SearchFacts:
    """What the search knows when a pass says which of its configs to try (`register(..., candidates=...)`): the
    model's format, the needs it meets (among NEEDS), this CPU's ISA flags, the objective, the user's accuracy
    budget and how long one trained candidate may train."""

    format: str
    met: frozenset[str]
    isa: frozenset[str] = frozenset()
    objective: str = "latency"
    max_drop: float = 0.01
    training_seconds: float = 300.0

    @property
    def transformer(self) -> bool:
        return "transformer" in self.met


@dataclass(frozen=True)
class PassEntry:
    """A registered pass and what the search reads from it: where it sits in a recipe (`stage`), what it needs
    (data splits, a transformer, convolutions), which backends run what it makes (the search runs it on the first),
    which ISA flags make that fast, which objectives it serves, and whether the search tries it at all (a fallback
    such as int8-mixed is not). The search tries its default config unless `candidates` says which configs to try
    for a model and data (`SearchFacts` -> configs; none to skip). A `prepares` graph pass is never tried alone:
    the search puts it under its backends' bare runtime and under each precision pass they run, where its needs
    are met (ONNX Runtime's transformer fusion). An `inserted` graph pass is never tried alone either: the refine
    stage tries the leader with it, before the leader's first precision or structure pass (padding removal, which
    pays only with the leader's own precision). A `to_budget` pass trains its way into the accuracy budget: the
    dearest candidates, tried last."""

    name: str
    config: type
    function: Callable[..., PassOutput]
    formats: tuple[str, ...]   # model formats it takes: "torch", "onnx"
    summary: str
    stage: str = "graph"
    needs: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()     # backends that run its output (empty: any that takes the format)
    accelerated_by: tuple[str, ...] = ()
    objectives: tuple[str, ...] = OBJECTIVES
    searched: bool = True
    makes: str | None = None   # the format of the model it returns, when not the one it takes (export, qat)
    candidates: Callable[[SearchFacts], tuple[Any, ...]] | None = None
    prepares: bool = False
    to_budget: bool = False
    inserted: bool = False


PASSES: dict[str, PassEntry] = {}
_BY_CONFIG: dict[type, PassEntry] = {}


def register(name: str, config: type, *, formats: tuple[str, ...], summary: str, stage: str = "graph",
             needs: tuple[str, ...] = (), backends: tuple[str, ...] = (), accelerated_by: tuple[str, ...] = (),
             objectives: tuple[str, ...] = OBJECTIVES, searched: bool = True, makes: str | None = None,
             candidates: Callable[[SearchFacts], tuple[Any, ...]] | None = None, prepares: bool = False,
             to_budget: bool = False, inserted: bool = False):
    """Register the function below for `config`'s type; the keywords are what the search reads (see PassEntry)."""
    if not dataclasses.is_dataclass(config) or not config.__dataclass_params__.frozen:
        raise TypeError(f"pass '{name}' config {config.__name__} must be a frozen dataclass")
    if stage not in STAGES or set(needs) - set(NEEDS) or set(objectives) - set(OBJECTIVES):
        raise ValueError(f"pass '{name}': stage must be one of {STAGES}, needs among {NEEDS}, objectives among "
                         f"{OBJECTIVES}")
    if prepares and (stage != "graph" or not backends):
        raise ValueError(f"pass '{name}': a pass that prepares its backends' graphs is a graph pass naming them")
    if inserted and (stage != "graph" or searched):
        raise ValueError(f"pass '{name}': a pass the refine stage inserts is a graph pass, not searched alone")
    config.pass_name = name  # errors about its values name the pass

    def decorate(function: Callable[..., PassOutput]) -> Callable[..., PassOutput]:
        if name in PASSES or config in _BY_CONFIG:
            raise ValueError(f"pass '{name}' ({config.__name__}) is registered twice")
        entry = PassEntry(name, config, function, formats, summary, stage, tuple(needs), tuple(backends),
                          tuple(accelerated_by), tuple(objectives), searched, makes, candidates, prepares, to_budget,
                          inserted)
        PASSES[name] = entry
        _BY_CONFIG[config] = entry
        return function

    return decorate


# the pass modules, in the order the search tries candidates of one kind (pruning to the budget before QAT)
MODULES = ("export", "fuse", "unpad", "prune", "prune_budget", "distill", "quantize", "mixed_precision", "lowrank",
           "cluster", "sparse")


def load_all() -> dict[str, PassEntry]:
    """Import every pass module so the registry is complete (modules import their runtimes lazily)."""
    import importlib

    import os

    for module in MODULES:
        importlib.import_module(f"infertune.passes.{module}")
    # user passes: INFERTUNE_PLUGINS=pkg.module,other.module registers more (worker processes inherit it)
    for plugin in filter(None, os.environ.get("INFERTUNE_PLUGINS", "").split(",")):
        try:
            importlib.import_module(plugin.strip())
        except ImportError as e:
            raise ConfigError(f"INFERTUNE_PLUGINS names '{plugin}', which cannot be imported: {e}") from e
    return PASSES


def in_search_order() -> list[PassEntry]:
    """Every registered pass, in the order of MODULES (a module's passes as it registers them; plugins last): the
    search's order among candidates of one kind, the same in every process whatever was imported first."""
    rank = {module: index for index, module in enumerate(MODULES)}

    def module_rank(entry: PassEntry) -> int:
        parts = entry.function.__module__.split(".")
        return rank.get(parts[2], len(MODULES)) if parts[:2] == ["infertune", "passes"] and len(parts) > 2 \
            else len(MODULES)

    return sorted(load_all().values(), key=module_rank)


def entry_for(config: Any) -> PassEntry:
    load_all()
    entry = _BY_CONFIG.get(type(config))
    if entry is None:
        raise ConfigError(f"{type(config).__name__} is not a registered pass config: registered passes are "
                          f"{', '.join(sorted(PASSES))}")
    return entry


def config_from_dict(name: str, values: dict[str, Any]) -> Any:
    """A config from a recipe: only into registered config classes, fields checked by name."""
    load_all()
    if name not in PASSES:
        raise ConfigError(f"unknown pass '{name}': registered passes are {', '.join(sorted(PASSES))}")
    cls = PASSES[name].config
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"pass '{name}' has no option '{unknown[0]}': its options are {', '.join(sorted(fields))}")
    try:
        config = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except TypeError as e:
        raise ConfigError(f"pass '{name}': {e}") from e
    check_config(name, config)
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    return {"pass": entry_for(config).name, **{k: list(v) if isinstance(v, tuple) else v
                                              for k, v in dataclasses.asdict(config).items()}}


def apply(model, config: Any, ctx: PassContext) -> PassOutput:
    """Apply one pass. Raises UnsupportedModelError when it cannot apply to this model or without data."""
    entry = entry_for(config)
    check_config(entry.name, config)
    if model.format not in entry.formats:
        raise UnsupportedModelError(f"pass '{entry.name}' takes a {' or '.join(entry.formats)} model, "
                                    f"'{model.name}' is {model.format}: export it first or choose another pass")
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    output = entry.function(model, config, ctx)
    # a compact weights file describes the weights of the pass that wrote it; a later pass that changes
    # the module without writing its own leaves it stale
    stored = output.model.meta.get("storage_path")
    if stored is not None and stored == model.meta.get("storage_path") and output.model.module is not model.module:
        output.model.meta = {k: v for k, v in output.model.meta.items() if k != "storage_path"}
    return output

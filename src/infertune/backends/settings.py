"""Runtime settings per backend: frozen dataclasses, importable without importing any runtime."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from infertune.errors import ConfigError
from infertune.params import check, param

PRECISIONS = ("fp32", "bf16", "fp16")
STATIC_SHAPES_KEPT = 32  # OpenVINO shapes=static: compiled models kept, the least recently used dropped
STATIC_COMPILES_MAX = 4 * STATIC_SHAPES_KEPT  # then shapes not kept run dynamic (no compile on every call)
TORCH_PRECISION = "weights and float inputs cast to this dtype; outputs returned as float32"


def usable_core_counts() -> tuple[int, ...]:
    """Intra-op thread counts worth trying: 1 up to the cores this process may use (powers of two, and all)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return tuple(sorted({min(2 ** i, cores) for i in range(cores.bit_length())} | {cores}))


# A field's `search` is what the search's refine stage tries on a built candidate (speed only: the outputs stay
# the same); `precision` changes the numbers, so the values in its `candidates` are first-stage candidates of their
# own, judged against the accuracy budget and tried early where the CPU's ISA accelerates them.


@dataclass(frozen=True)
class TorchSettings:
    precision: str = param("fp32", TORCH_PRECISION, choices=PRECISIONS, candidates=("bf16",))
    threads: int | None = param(None, "torch.set_num_threads; None keeps the runtime's default", low=1,
                                search=usable_core_counts)
    device: str = "cpu"


@dataclass(frozen=True)
class TorchCompileSettings(TorchSettings):
    # bf16 is no first-stage candidate here (it never was): torch eager's bf16 candidate already tells whether bf16
    # keeps the accuracy budget, without a compile
    precision: str = param("fp32", TORCH_PRECISION, choices=PRECISIONS)
    freezing: bool = param(True, "inductor freezing: folds weights as constants (about 2x on MiniLM here)",
                           search=(True, False))
    mode: str = param("default", "torch.compile mode", choices=("default", "reduce-overhead", "max-autotune",
                                                                  "max-autotune-no-cudagraphs"),
                      search=("default", "max-autotune-no-cudagraphs"))


@dataclass(frozen=True)
class OnnxRuntimeSettings:
    precision: str = param("fp32", "ONNX Runtime runs the graph's own dtypes; fp16 graphs come from a pass",
                           choices=PRECISIONS)
    threads: int | None = param(None, "intra-op threads; None = one per physical core", low=1,
                                search=usable_core_counts)
    device: str = "cpu"
    graph_optimization: str = param("all", "graph optimization level", choices=("disable", "basic", "extended", "all"),
                                    search=("all", "extended", "basic"))
    spinning: bool = param(True, "intra-op threads spin between calls; off leaves the cores to other work (a server)",
                           search=(True, False))
    skip_layer_norm: bool = param(False, "let ONNX Runtime fuse Add + LayerNormalization into SkipLayerNormalization "
                                         "when it loads a graph on the CPU (levels extended and all; CUDA always "
                                         "does). Off by default: on this project's AMX machine (ONNX Runtime 1.32) "
                                         "that CPU kernel ran 7x slower than LayerNormalization's on a batch of 32 "
                                         "MiniLM rows, 3x on one sentence",
                                  search=(False, True))
    by_length: bool = param(False, "cut a batch by length: rows sorted by their real length (the attention mask), "
                                   "each part run without the padding none of its rows needs, the outputs put back "
                                   "in order (two parts, one after the other, where that saves a tenth of the "
                                   "padded work). Only for a model whose outputs have no sequence axis",
                            search=(False, True), needs=("padded-sequences",), objectives=("throughput",))
    exporter: str = param("torchscript", "for torch models: torchscript (dynamo=False) or dynamo",
                          choices=("torchscript", "dynamo"))


@dataclass(frozen=True)
class OpenVINOSettings:
    precision: str = param("fp32", "INFERENCE_PRECISION_HINT, always set: unset, a bf16-capable CPU silently runs "
                                   "bf16", choices=PRECISIONS, candidates=("bf16",))
    threads: int | None = param(None, "INFERENCE_NUM_THREADS", low=1, search=usable_core_counts)
    device: str = "cpu"
    performance_hint: str = param("LATENCY", "PERFORMANCE_HINT", choices=("LATENCY", "THROUGHPUT"),
                                  search=("LATENCY", "THROUGHPUT"))
    streams: int | None = param(None, "NUM_STREAMS (parallel requests the plugin prepares for); None: as the "
                                      "performance hint decides", low=1, search=(1, 2))
    split: int = param(1, "run a batch as this many runs of consecutive rows at once, each on its own stream "
                          "(NUM_STREAMS set to it, the threads shared out among them): parts on cores of their own "
                          "never wait on each other's threads. A batch of fewer rows runs whole, on one stream's share "
                          "of the threads", low=1, search=usable_core_counts)
    shapes: str = param("dynamic", "dynamic: one compiled model for every input shape; static: a model compiled "
                                   "for each input shape that repeats, once its calls have run as long as a "
                                   f"compile takes (about 0.4 s for MiniLM; the {STATIC_SHAPES_KEPT} last used "
                                   "kept): faster where shapes repeat, the same where they do not",
                        choices=("dynamic", "static"), search=("dynamic", "static"))
    by_length: bool = param(False, "cut a batch by length: rows sorted by their real length (the attention mask), "
                                   "each part run without the padding none of its rows needs, the outputs put back "
                                   "in order; under split, parts of balanced work run at once. Only for a model "
                                   "whose outputs have no sequence axis",
                            search=(False, True), needs=("padded-sequences",), objectives=("throughput",))
    exporter: str = param("torchscript", "for torch models: torchscript (dynamo=False) or dynamo",
                          choices=("torchscript", "dynamo"))

    def __post_init__(self) -> None:
        if self.split > 1 and self.streams is not None and self.streams < self.split:
            raise ConfigError(f"openvino split={self.split} runs that many parts of a batch at once, on as many "
                              f"streams, but streams={self.streams}: leave streams unset or raise it")


def _coerce(backend: str, name: str, value: Any, kind: type) -> Any:
    if value is None or (kind is not bool and isinstance(value, kind)):
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
    elif kind is int:
        try:
            return int(value)
        except (TypeError, ValueError):
            pass
    elif kind is str:
        return str(value)
    raise ConfigError(f"{backend} option {name}={value!r} is not a {kind.__name__}")


def make_settings(backend: str, cls: type, options: dict[str, Any]) -> Any:
    """Build a settings object from loose options (CLI strings included), naming any bad one."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for name, value in options.items():
        if name not in fields:
            raise ConfigError(f"{backend} has no option '{name}': its options are {', '.join(fields)}")
        kind = {"int | None": int, "int": int, "bool": bool, "str": str}.get(str(fields[name].type), str)
        values[name] = _coerce(backend, name, value, kind)
    settings = cls(**values)
    check(backend, settings)
    return settings

"""Runtime settings per backend: frozen dataclasses, importable without importing any runtime."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from infertune.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TorchSettings:
    precision: str = "fp32"      # weights and float inputs cast to this dtype; outputs returned as float32
    threads: int | None = None   # torch.set_num_threads; None keeps the runtime's default
    device: str = "cpu"


@dataclass(frozen=True)
class TorchCompileSettings(TorchSettings):
    freezing: bool = True        # inductor freezing: folds weights as constants (about 2x on MiniLM here)
    mode: str = "default"        # torch.compile mode: default, reduce-overhead, max-autotune


@dataclass(frozen=True)
class OnnxRuntimeSettings:
    precision: str = "fp32"      # ONNX Runtime runs the graph's own dtypes; fp16 graphs come from a pass
    threads: int | None = None   # intra-op threads; None = one per physical core
    device: str = "cpu"
    graph_optimization: str = "all"   # disable, basic, extended, all
    spinning: bool = True        # intra-op threads spin between calls; off leaves the cores to other work (a server)
    exporter: str = "torchscript"     # for torch models: torchscript (dynamo=False) or dynamo


@dataclass(frozen=True)
class OpenVINOSettings:
    precision: str = "fp32"      # INFERENCE_PRECISION_HINT, always set: unset, this CPU silently runs bf16
    threads: int | None = None   # INFERENCE_NUM_THREADS
    device: str = "cpu"
    performance_hint: str = "LATENCY"  # LATENCY or THROUGHPUT
    exporter: str = "torchscript"

_CHOICES: dict[str, tuple[str, ...]] = {
    "precision": PRECISIONS,
    "mode": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    "graph_optimization": ("disable", "basic", "extended", "all"),
    "exporter": ("torchscript", "dynamo"),
    "performance_hint": ("LATENCY", "THROUGHPUT"),
}


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
        kind = {"int | None": int, "bool": bool, "str": str}.get(str(fields[name].type), str)
        value = _coerce(backend, name, value, kind)
        if name in _CHOICES and value not in _CHOICES[name]:
            raise ConfigError(f"{backend} option {name}={value!r} is not one of {', '.join(_CHOICES[name])}")
        if name == "threads" and value is not None and value < 1:
            raise ConfigError(f"threads must be a positive integer, got {value}")
        values[name] = value
    return cls(**values)

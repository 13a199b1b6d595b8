"""Runtimes behind one interface. `load_session(model, "onnxruntime", threads=2).run(inputs)`.

Runtimes are imported only when a session is loaded, so listing them is cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from infertune.backends.base import Session
from infertune.backends.settings import (OnnxRuntimeSettings, OpenVINOSettings, TorchCompileSettings,
                                         TorchSettings, make_settings)
from infertune.errors import BackendUnavailableError, ConfigError

__all__ = ["BACKENDS", "Session", "available_backends", "load_session", "make_backend_settings", "unavailable_reason"]

CPU_BACKENDS = ("torch", "torch-compile", "onnxruntime", "openvino")


@dataclass(frozen=True)
class BackendEntry:
    module: str            # infertune.backends.<module> defines load(model, settings) -> Session
    settings: type
    device: str
    formats: tuple[str, ...]   # model formats it can run: "torch", "onnx" (a torch model is exported)
    description: str


BACKENDS: dict[str, BackendEntry] = {}


def register(name: str, entry: BackendEntry) -> None:
    if name in BACKENDS:
        raise ValueError(f"backend '{name}' is registered twice")
    BACKENDS[name] = entry


register("torch", BackendEntry("torch_eager", TorchSettings, "cpu", ("torch",),
                               "PyTorch eager under inference_mode, fp32/bf16/fp16"))
register("torch-compile", BackendEntry("torch_compile", TorchCompileSettings, "cpu", ("torch",),
                                       "torch.compile (inductor), optionally with freezing"))
register("onnxruntime", BackendEntry("onnxruntime", OnnxRuntimeSettings, "cpu", ("onnx", "torch"),
                                     "ONNX Runtime, CPU execution provider"))
register("openvino", BackendEntry("openvino", OpenVINOSettings, "cpu", ("onnx", "torch", "openvino"),
                                  "OpenVINO CPU plugin with an explicit precision hint"))
register("torch-cuda", BackendEntry("torch_eager", TorchSettings, "cuda", ("torch",), "PyTorch eager on CUDA"))
register("torch-compile-cuda", BackendEntry("torch_compile", TorchCompileSettings, "cuda", ("torch",),
                                            "torch.compile on CUDA"))
register("onnxruntime-cuda", BackendEntry("onnxruntime", OnnxRuntimeSettings, "cuda", ("onnx", "torch"),
                                          "ONNX Runtime, CUDA execution provider"))


def _entry(name: str) -> BackendEntry:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend '{name}': use one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def unavailable_reason(name: str) -> str | None:
    """None when the backend can run here, else why not (a missing package, no GPU)."""
    entry = _entry(name)
    module = importlib.import_module(f"infertune.backends.{entry.module}")
    return module.unavailable_reason(entry.device)


def available_backends() -> list[str]:
    return [name for name in BACKENDS if unavailable_reason(name) is None]


def make_backend_settings(name: str, **options: Any) -> Any:
    entry = _entry(name)
    return make_settings(name, entry.settings, {**options, "device": entry.device})


def load_session(model, backend: str, settings: Any = None, **options: Any) -> Session:
    """Load `model` on `backend`. Pass a settings object, or options such as precision="bf16", threads=2."""
    entry = _entry(backend)
    if settings is None:
        settings = make_backend_settings(backend, **options)
    elif options:
        raise ConfigError("pass either a settings object or options, not both")
    if model.format not in entry.formats:
        raise ConfigError(f"backend '{backend}' cannot run a {model.format} model ('{model.name}'): "
                          f"backends for {model.format} models: "
                          f"{', '.join(n for n, e in BACKENDS.items() if model.format in e.formats)}")
    reason = unavailable_reason(backend)
    if reason is not None:
        raise BackendUnavailableError(f"backend '{backend}' is not available here: {reason}")
    module = importlib.import_module(f"infertune.backends.{entry.module}")
    session = module.load(model, settings)
    session.backend = backend
    return session

"""torch.compile with the inductor backend, with or without freezing."""

from __future__ import annotations

from infertune.backends.settings import TorchCompileSettings
from infertune.backends.torch_eager import TorchSession, prepare_module
from infertune.backends.torch_eager import unavailable_reason as _torch_unavailable


def unavailable_reason(device: str) -> str | None:
    reason = _torch_unavailable(device)
    if reason is not None:
        return reason
    try:
        import torch._inductor  # noqa: F401  (inductor needs a C++ compiler at run time)
    except Exception as e:  # pragma: no cover - depends on the install
        return f"torch inductor is unavailable ({e})"
    import shutil

    if shutil.which("g++") is None and shutil.which("c++") is None:
        return "torch.compile (inductor) needs a C++ compiler: install g++"
    return None


class CompiledSession(TorchSession):
    """Compilation happens at the first call of each new input shape: the benchmark's warm-up."""

    def __init__(self, model, settings: TorchCompileSettings, module, dtype):
        import torch

        super().__init__(model, settings, module, dtype)
        from torch._inductor import list_mode_options

        # freezing goes in this compile's own options (mode and options can't both be given, so the mode's
        # options are spelled out): no global flag, nothing patched on the timed path
        options = {**list_mode_options(settings.mode), "freezing": settings.freezing}
        self._compiled = torch.compile(module, backend="inductor", options=options)

    def _call(self, tensors):
        return self._compiled(*tensors)


def load(model, settings: TorchCompileSettings) -> CompiledSession:
    module, dtype = prepare_module(model, settings)
    return CompiledSession(model, settings, module, dtype)

"""PyTorch eager, under `inference_mode`, in fp32, bf16 or fp16."""

from __future__ import annotations

import copy
import functools
import io
import os

import numpy as np

from infertune.backends.base import Session, outputs_dict
from infertune.backends.settings import TorchSettings
from infertune.errors import ConfigError

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def unavailable_reason(device: str) -> str | None:
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed (pip install torch==2.13.0)"
    if device == "cuda" and not torch.cuda.is_available():
        return "no CUDA GPU is visible to PyTorch"
    return None


def state_dict_bytes(module) -> int:
    """Size of the module's weights saved as safetensors: what a torch artifact costs on disk."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    try:
        return len(save(state))
    except Exception:  # shared storages that safetensors refuses: fall back to torch's format
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getbuffer().nbytes


def _has_quantized_weights(module) -> bool:
    """torchao (and similar) keep quantized weights as tensor subclasses inside ordinary parameters."""
    import torch

    return any(type(p.data) is not torch.Tensor or p.dtype in (torch.int8, torch.uint8) for p in module.parameters())


def prepare_module(model, settings: TorchSettings):
    """A copy of the model's module on the settings' device and dtype (the user's module is untouched)."""
    import torch

    if settings.precision not in DTYPES:
        raise ConfigError(f"torch precision '{settings.precision}' is not one of {', '.join(DTYPES)}")
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    module = copy.deepcopy(model.module)
    dtype = getattr(torch, DTYPES[settings.precision])
    if getattr(module, "runs_low_precision_by_autocast", False):  # its layers cast their inputs to float32
        return module.to(device=settings.device).eval(), dtype
    return module.to(device=settings.device, dtype=dtype).eval(), dtype


class TorchSession(Session):
    def __init__(self, model, settings: TorchSettings, module, dtype):
        self.settings = settings
        self.signature = model.signature
        self._stored = model.meta.get("storage_path")  # compact storage written by a pass (codebooks, CSR)
        self._module = module
        self._dtype = dtype
        self._device = settings.device
        # a module whose layers keep float32 weights and inputs (Keras) runs bf16/fp16 under autocast instead
        self._autocast = dtype if getattr(module, "runs_low_precision_by_autocast", False) and \
            settings.precision != "fp32" else None

    @functools.cached_property
    def precision(self) -> str:
        return "int8" if _has_quantized_weights(self._module) else self.settings.precision

    @functools.cached_property
    def artifact_bytes(self) -> int:
        # computed when first asked, after the measurement, so serialising it never counts in peak memory
        if self._stored and self.settings.precision == "fp32":
            return os.path.getsize(self._stored)
        return state_dict_bytes(self._module)

    def _call(self, tensors):
        return self._module(*tensors)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        tensors = []
        for spec in self.signature.inputs:
            tensor = torch.from_numpy(np.ascontiguousarray(inputs[spec.name])).to(self._device)
            if tensor.is_floating_point() and self._autocast is None:
                tensor = tensor.to(self._dtype)
            tensors.append(tensor)
        if self._autocast is None:
            with torch.inference_mode():
                result = self._call(tensors)
        else:
            with torch.inference_mode(), torch.autocast(self._device.split(":")[0], dtype=self._autocast):
                result = self._call(tensors)
        values = result if isinstance(result, (tuple, list)) else (result,)
        return outputs_dict(self.signature, [v.float().cpu().numpy() for v in values])


def load(model, settings: TorchSettings) -> TorchSession:
    module, dtype = prepare_module(model, settings)
    return TorchSession(model, settings, module, dtype)

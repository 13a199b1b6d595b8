"""A PyTorch factory `package.module:function` returning an `nn.Module`, with optional weights."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import numpy as np

from infertune.errors import DataError, UnsupportedModelError
from infertune.model.base import Model
from infertune.model.signature import Signature, TensorSpec, guess_task
from infertune.model.spec import ModelSpec


def load_weights(path: str | Path) -> dict:
    """A state dict from safetensors, or from a torch file loaded with `weights_only=True` (never unpickled)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UnsupportedModelError(f"weights file '{path}' not found: check --weights")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise UnsupportedModelError(f"weights file '{path}' is not a readable safetensors file "
                                        f"({type(e).__name__}): check or re-save it") from e
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise UnsupportedModelError(f"weights file '{path}' is not a safetensors file or a plain state dict "
                                    f"({type(e).__name__}): save it with safetensors.torch.save_file") from e
    if not isinstance(state, dict):
        raise UnsupportedModelError(f"weights file '{path}' holds a {type(state).__name__}, not a state dict")
    return state


def _import_factory(spec: str):
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise UnsupportedModelError(f"factory '{spec}' must be package.module:function")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UnsupportedModelError(f"cannot import '{module_name}' for factory '{spec}' ({e}): "
                                    f"run from the folder that holds it or install it") from e
    except Exception as e:  # the user's module fails while importing (SyntaxError, its own errors)
        raise UnsupportedModelError(f"importing '{module_name}' for factory '{spec}' failed: "
                                    f"{type(e).__name__}: {e}") from e
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise UnsupportedModelError(f"'{module_name}' has no function '{function_name}' (factory '{spec}')")
    return factory


def _signature(module, sample_inputs: dict[str, np.ndarray]) -> Signature:
    import torch

    try:
        with torch.inference_mode():
            result = module(*[torch.from_numpy(a) for a in sample_inputs.values()])
    except Exception as e:
        shapes = ", ".join(f"{n}: {a.dtype}{list(a.shape)}" for n, a in sample_inputs.items())
        raise UnsupportedModelError(f"the model does not run on the data's inputs ({shapes}): "
                                    f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    from infertune.model.text import TOKEN_INPUTS

    outputs = result if isinstance(result, (tuple, list)) else (result,)
    names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
    # token ids and their mask take any length, as a tokenizer pads each batch to its longest text
    axes = {n: ("batch", "sequence") if n in TOKEN_INPUTS and a.ndim == 2 else ("batch", *a.shape[1:])
            for n, a in sample_inputs.items()}
    return Signature(
        inputs=tuple(TensorSpec(n, str(a.dtype), axes[n]) for n, a in sample_inputs.items()),
        outputs=tuple(TensorSpec(n, str(o.dtype).removeprefix("torch."), ("batch", *o.shape[1:]))
                      for n, o in zip(names, outputs)),
    )


def load(model_spec: ModelSpec, *, data: dict[str, np.ndarray] | None = None) -> Model:
    """`data`: one sample batch per input, named as the forward arguments; it fixes the signature."""
    spec, weights = model_spec.model, model_spec.weights
    factory = _import_factory(spec)
    try:
        module = factory()
    except Exception as e:
        raise UnsupportedModelError(f"factory '{spec}' raised {type(e).__name__}: {e}") from e
    from torch import nn

    if not isinstance(module, nn.Module):
        raise UnsupportedModelError(f"factory '{spec}' returned a {type(module).__name__}, not a torch.nn.Module")
    if weights is not None:
        try:
            missing, unexpected = module.load_state_dict(load_weights(weights), strict=False)
        except RuntimeError as e:  # shapes that differ
            raise UnsupportedModelError(f"weights '{weights}' do not fit factory '{spec}': "
                                        f"{str(e).splitlines()[-1].strip()}") from e
        if missing or unexpected:
            raise UnsupportedModelError(f"weights '{weights}' do not fit factory '{spec}': "
                                        f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}")
    module.eval()
    names = [p for p in inspect.signature(module.forward).parameters]
    if data is None:
        raise DataError(f"factory model '{spec}' needs --data (an .npz with arrays named {', '.join(names)}) "
                        f"to know its input shapes")
    missing_inputs = [n for n in names if n not in data]
    if missing_inputs:
        raise DataError(f"data lacks input '{missing_inputs[0]}' of factory '{spec}' "
                        f"(forward takes {', '.join(names)}; data has {', '.join(sorted(data))})")
    sample = {n: np.ascontiguousarray(data[n][:2]) for n in names}
    signature = _signature(module, sample)
    # a factory may say what its outputs are and facts passes use (attention heads...)
    task = model_spec.task or getattr(module, "infertune_task", None) or guess_task(signature)
    return Model(name=spec.rpartition(":")[2], spec=model_spec, signature=signature, task=task,
                 meta=dict(getattr(module, "infertune_meta", {})), module=module)

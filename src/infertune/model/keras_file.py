"""Keras 3 `.keras` files, loaded through Keras' torch backend, so they run on the torch path (every backend,
ONNX export) without TensorFlow. A chain of common layers is then rebuilt from torch layers (`keras_torch`), so
the passes that rewrite nn.Linear / nn.Conv2d (pruning, distillation, QAT) take it too. What that backend cannot
load goes through tf2onnx (`infertune[tensorflow]`) instead."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from infertune.errors import UnsupportedModelError
from infertune.model.base import Model
from infertune.model.signature import Signature, TensorSpec, guess_task
from infertune.model.spec import ModelSpec


def _keras():
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "torch"  # before the first import: the backend is fixed then
    try:
        import keras
    except ImportError as e:
        raise UnsupportedModelError("a .keras model needs Keras 3: pip install keras") from e
    if keras.backend.backend() != "torch":
        raise UnsupportedModelError(f"Keras was imported with its {keras.backend.backend()} backend before infertune "
                                    f"loaded the model: set KERAS_BACKEND=torch before importing keras")
    return keras


def load(path: Path, spec: ModelSpec) -> Model:
    """The Keras model as a torch module; its inputs and outputs named after its Input and output layers."""
    if not path.is_file():
        raise UnsupportedModelError(f"model file '{path}' not found: check the path")
    keras = _keras()
    try:
        loaded = keras.saving.load_model(str(path), compile=False)  # safe_mode: no arbitrary code from the file
    except Exception as e:  # Keras raises ValueError, TypeError... for layers its torch backend lacks
        from infertune.model import onnx_file, tf_convert

        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        onnx_path = tf_convert.converted(path, "keras", why=f"Keras' torch backend cannot load '{path}' ({reason})")
        return onnx_file.load(onnx_path, spec)
    if not getattr(loaded, "inputs", None) or not getattr(loaded, "outputs", None):
        raise UnsupportedModelError(f"'{path}' is a Keras model without defined inputs: build it with keras.Input "
                                    f"(functional or Sequential) so its input shapes are known")
    signature = Signature(inputs=tuple(_spec(t, f"input_{i}") for i, t in enumerate(loaded.inputs)),
                          outputs=_outputs(loaded.outputs))
    from infertune.model.keras_module import KerasModule

    module = KerasModule(loaded, len(signature.inputs)).eval()
    rebuilt, loaded_as = _rebuilt(loaded, module, signature)
    return Model(name=path.stem, spec=spec, signature=signature, task=spec.task or guess_task(signature),
                 module=rebuilt or module, meta={"keras_file": str(path.resolve()), "loaded_as": loaded_as})


def _rebuilt(loaded, module, signature: Signature):
    """The model rebuilt from torch layers when it is a chain of layers that have a rebuild and it computes what
    Keras computes (checked on random inputs); else None and why, and the model stays on Keras' backend."""
    import torch

    from infertune.model.keras_torch import NotConvertible, to_torch

    def stays(why: str):
        return None, (f"on Keras' torch backend ({why}): the passes that rewrite torch layers (pruning, "
                      f"distillation, QAT) are not offered")

    try:
        rebuilt, layers = to_torch(loaded)
    except NotConvertible as e:
        return stays(str(e))
    (spec,) = signature.inputs
    shape = [4] + [d if isinstance(d, int) else 8 for d in spec.shape[1:]]
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    try:
        with torch.no_grad():
            want, got = module(x).float(), rebuilt(x)
    except Exception as e:  # a shape the check's input does not fit, an op one side lacks
        return stays(f"the torch rebuild could not be checked against Keras: {type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''}")
    if got.shape != want.shape:
        return stays(f"the torch rebuild's output is {tuple(got.shape)}, Keras' {tuple(want.shape)}")
    diff = float((got - want).abs().max())
    scale = float(want.abs().max()) or 1.0
    if not np.isfinite(diff) or diff > 1e-4 * max(scale, 1.0):
        return stays(f"the torch rebuild differs from Keras by {diff:.2e}")
    counts = {kind: layers.count(kind) for kind in dict.fromkeys(layers)}
    return rebuilt, (f"Keras layers rebuilt as torch layers ({', '.join(f'{k} x{n}' for k, n in counts.items())}; "
                     f"max |diff| {diff:.1e} against Keras)")


def _spec(tensor, fallback: str, name: str | None = None) -> TensorSpec:
    shape = tuple("batch" if i == 0 else (d if isinstance(d, int) else f"dim{i}") for i, d in enumerate(tensor.shape))
    dtype = str(getattr(tensor, "dtype", "float32"))
    return TensorSpec(name or getattr(tensor, "name", None) or fallback, dtype, shape)


def _outputs(tensors) -> tuple[TensorSpec, ...]:
    """Named after the layer that makes each output (keras_tensor_N names say nothing)."""
    names: list[str] = []
    for i, tensor in enumerate(tensors):
        history = getattr(tensor, "_keras_history", None)
        layer = getattr(getattr(history, "operation", None), "name", None)
        name = layer if layer and layer not in names else f"output_{i}" if len(tensors) > 1 else "output"
        names.append(name)
    return tuple(_spec(t, name, name) for t, name in zip(tensors, names))

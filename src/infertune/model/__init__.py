"""Loading models: the zoo, `.onnx` files and PyTorch factories, each with its signature."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infertune.errors import UnsupportedModelError
from infertune.model.base import Model
from infertune.model.signature import Signature, TensorSpec
from infertune.model.zoo import ZOO, load_zoo

__all__ = ["Model", "Signature", "TensorSpec", "ZOO", "load_model"]


def load_model(spec: str, *, weights: str | None = None, data: dict[str, np.ndarray] | None = None) -> Model:
    """Load a zoo model, an `.onnx` file, or a factory `package.module:function`.

    `weights` goes with a factory; `data` (arrays named as the forward arguments) fixes a factory's
    input shapes. Example: `load_model("minilm")`, `load_model("model.onnx")`.
    """
    if Path(spec).is_dir():  # a run directory written by optimize: its chosen artifact
        from infertune.search.artifact import find_manifest, load_artifact

        manifest = find_manifest(Path(spec))
        if manifest is None:
            raise UnsupportedModelError(f"'{spec}' is a folder without an infertune artifact (model/manifest.json): "
                                        f"pass a run directory written by infertune optimize")
        return load_artifact(manifest)[0]
    if weights is not None and (spec in ZOO or spec.endswith(".onnx")):
        raise UnsupportedModelError(f"--weights applies to a factory model (package.module:function), not to "
                                    f"'{spec}', which carries its own weights")
    if spec in ZOO:
        return load_zoo(spec)
    if spec.endswith(".onnx"):
        from infertune.model import onnx_file

        return onnx_file.load(spec)
    if ":" in spec and not Path(spec).exists():
        from infertune.model import factory

        return factory.load(spec, weights=weights, data=data)
    if Path(spec).exists():
        raise UnsupportedModelError(f"'{spec}' is not an .onnx file: pass an .onnx model, a zoo name "
                                    f"({', '.join(ZOO)}) or a factory package.module:function")
    raise UnsupportedModelError(f"unknown model '{spec}': use a zoo name ({', '.join(ZOO)}), a path to an "
                                f".onnx file, or a factory package.module:function")

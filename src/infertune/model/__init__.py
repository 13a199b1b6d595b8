"""Models: the zoo, Hugging Face folders, `.onnx` files and folders, Keras and TensorFlow models, and PyTorch
factories, each with its signature. `infertune.resolve` decides which one a spec names."""

from __future__ import annotations

from infertune.model.base import Model
from infertune.model.signature import Signature, TensorSpec
from infertune.model.spec import ModelSpec
from infertune.model.zoo import ZOO

__all__ = ["Model", "ModelSpec", "Signature", "TensorSpec", "ZOO"]

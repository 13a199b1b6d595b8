"""`Model`: what the user brought, with its signature and how to turn data into inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from infertune.model.signature import Signature
from infertune.model.spec import ModelSpec

if TYPE_CHECKING:
    import torch

    from infertune.data import Split


@dataclass
class Model:
    """A loaded model: a torch module or an ONNX file, its signature, and its preprocessing.

    `spec` is what reloads it in another process (`infertune.resolve(spec)`); `labels` are the class names of a
    classifier, in class-id order; `backend` and `backend_options` are what a run directory chose for it.
    """

    name: str
    spec: ModelSpec
    signature: Signature
    task: str  # "embedding", "classification", "token-classification" or "generic": picks the quality metrics
    module: "torch.nn.Module | None" = None
    onnx_path: Path | None = None
    ir_path: Path | None = None  # an OpenVINO IR (.xml), e.g. after NNCF quantization
    default_data: str | None = None
    encode_texts: Callable[[list[str]], dict[str, np.ndarray]] | None = None
    labels: tuple[str, ...] | None = None
    backend: str | None = None
    backend_options: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def format(self) -> str:
        if self.module is not None:
            return "torch"
        return "openvino" if self.ir_path is not None else "onnx"

    @property
    def label2id(self) -> dict[str, int] | None:
        """Label name -> class id, for data files that name their labels."""
        return None if self.labels is None else {name: i for i, name in enumerate(self.labels)}

    @property
    def is_text(self) -> bool:
        return self.encode_texts is not None

    @property
    def input_specs(self) -> dict[str, tuple[str, tuple]] | None:
        """What an .npz must hold for this model (name -> dtype, shape); None for text, which it tokenizes."""
        if self.is_text:
            return None
        return {s.name: (s.dtype, s.shape) for s in self.signature.inputs}

    def inputs_for(self, split: "Split", indices: np.ndarray | list[int] | slice) -> dict[str, np.ndarray]:
        """The model inputs for some samples of a split: tokenized text, or sliced arrays."""
        if split.texts is not None:
            if self.encode_texts is None:
                raise_text_mismatch(self.name)
            texts = list(np.asarray(split.texts, dtype=object)[indices])
            return self.encode_texts(texts)
        assert split.inputs is not None  # a Split holds texts or inputs by construction
        missing = [name for name in self.signature.input_names if name not in split.inputs]
        if missing:
            from infertune.errors import DataError

            raise DataError(f"data has no input '{missing[0]}' for model '{self.name}' (it has "
                            f"{', '.join(sorted(split.inputs)) or 'nothing'}): the model expects "
                            f"{self.signature.describe_inputs()}")
        return {name: np.ascontiguousarray(split.inputs[name][indices]) for name in self.signature.input_names}

    def example_inputs(self, batch_size: int = 2, sequence_length: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
        """Random inputs that fit the signature (for tracing and for timing without data)."""
        rng = np.random.default_rng(seed)
        inputs: dict[str, np.ndarray] = {}
        for spec in self.signature.inputs:
            shape = [batch_size if i == 0 and isinstance(d, str) else (sequence_length if isinstance(d, str) else d)
                     for i, d in enumerate(spec.shape)]
            if spec.dtype.startswith("float"):
                inputs[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
            elif "mask" in spec.name:
                inputs[spec.name] = np.ones(shape, dtype=spec.dtype)
            else:
                inputs[spec.name] = rng.integers(0, 100, size=shape).astype(spec.dtype)
        return inputs


def raise_text_mismatch(name: str) -> None:
    from infertune.errors import DataError

    raise DataError(f"model '{name}' takes arrays, not text: pass an .npz with its inputs via --data")

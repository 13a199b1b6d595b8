"""`infertune.load(model)`: an engine ready to run, `engine.run({"input": array}) -> {"output": array}`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from infertune.backends.base import Session
from infertune.model.base import Model


@dataclass
class Engine:
    model: Model
    session: Session

    @property
    def signature(self):
        return self.model.signature

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validated inputs (names, dtypes, ranks) in, float32 outputs out."""
        self.model.signature.check_inputs(inputs)
        return self.session.run(inputs)

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Tokenize sentences for a text model (natural length, padded to the longest)."""
        if self.model.encode_texts is None:
            from infertune.errors import DataError

            raise DataError(f"model '{self.model.name}' takes arrays, not text")
        return self.model.encode_texts(texts)


def load(model, *, backend: str | None = None, weights: str | None = None, data=None, task: str | None = None,
         **options: Any) -> Engine:
    """Load a model (any spec `infertune.resolve` reads, or a loaded Model) on a backend, ready to run.

    Without `backend`: a run directory's own backend (with its settings), torch for a torch model, openvino for an
    OpenVINO IR, onnxruntime for an ONNX model. `data` matters for a factory (arrays, or a data file).
    Example: `infertune.load("digits-cnn", backend="onnxruntime").run({"pixels": x})`.
    """
    from infertune.backends import load_session
    from infertune.resolver import load_model

    if not isinstance(model, Model):
        model = load_model(model, weights=weights, data=data, task=task)
    if model.backend is not None and backend in (None, model.backend):
        backend, options = model.backend, {**model.backend_options, **options}
    backend = backend or {"torch": "torch", "openvino": "openvino"}.get(model.format, "onnxruntime")
    return Engine(model=model, session=load_session(model, backend, **options))

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


def load(model: str | Model, *, backend: str | None = None, weights: str | None = None,
         data: dict[str, np.ndarray] | None = None, **options: Any) -> Engine:
    """Load a model (zoo name, .onnx path, factory, or a loaded Model) on a backend, ready to run.

    Without `backend`: torch for a torch model, onnxruntime for an ONNX file.
    Example: `infertune.load("digits-cnn", backend="onnxruntime").run({"pixels": x})`.
    """
    from pathlib import Path

    from infertune.backends import load_session
    from infertune.model import load_model

    if isinstance(model, (str, Path)) and Path(model).is_dir():
        from infertune.search.artifact import find_manifest, load_artifact

        manifest = find_manifest(Path(model))
        if manifest is None:
            from infertune.errors import UnsupportedModelError

            raise UnsupportedModelError(f"'{model}' is a folder without an infertune artifact (model/manifest.json): "
                                        f"pass a run directory written by infertune optimize")
        model, saved_backend, saved_options = load_artifact(manifest)
        backend = backend or saved_backend
        options = {**saved_options, **options} if backend == saved_backend else options
    elif isinstance(model, str):
        model = load_model(model, weights=weights, data=data)
    backend = backend or ("torch" if model.module is not None else "onnxruntime")
    return Engine(model=model, session=load_session(model, backend, **options))

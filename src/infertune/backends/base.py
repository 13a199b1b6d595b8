"""The one interface every runtime implements: load an artifact with settings, get a `Session`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from infertune.model.signature import Signature


class Session(ABC):
    """A model loaded on one runtime: `run(inputs) -> outputs`, numpy in, numpy (float32) out."""

    backend: str
    settings: Any
    signature: Signature
    precision: str         # what actually executes (read back from the runtime where it can say)
    artifact_bytes: int    # size on disk of what this runtime loads

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ...

    def expect(self, batches: list[dict[str, np.ndarray]]) -> None:
        """The caller will run `batches` over and over (a benchmark's workload). A session that adapts to the
        shapes it meets (OpenVINO shapes=static) adapts now, so timed runs see its steady state."""

    def describe(self) -> dict[str, Any]:
        import dataclasses

        return {"backend": self.backend, "settings": dataclasses.asdict(self.settings),
                "precision": self.precision, "artifact_bytes": self.artifact_bytes}


def outputs_dict(signature: Signature, values: list[np.ndarray]) -> dict[str, np.ndarray]:
    names = signature.output_names
    if len(values) != len(names):
        raise RuntimeError(f"runtime returned {len(values)} outputs, the signature names {len(names)}")
    return dict(zip(names, values))

"""A model's input/output signature: names, dtypes and shapes with named dynamic axes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infertune.errors import DataError

Dim = int | str  # an int is a fixed size, a str names a dynamic axis ("batch", "sequence")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "int64", ...
    shape: tuple[Dim, ...]

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def describe(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        """Raise DataError naming the first input that is missing or has the wrong dtype or rank."""
        for spec in self.inputs:
            if spec.name not in inputs:
                present = ", ".join(sorted(inputs)) or "nothing"
                raise DataError(f"input '{spec.name}' is missing (got {present}); "
                                f"the model expects {self.describe_inputs()}")
            array = inputs[spec.name]
            if str(array.dtype) != spec.dtype:
                raise DataError(f"input '{spec.name}' has dtype {array.dtype}, expected {spec.dtype}: "
                                f"cast it with .astype('{spec.dtype}')")
            if array.ndim != len(spec.shape):
                raise DataError(f"input '{spec.name}' has shape {tuple(array.shape)}, "
                                f"expected {spec.describe()}")
            for axis, dim in enumerate(spec.shape):
                if isinstance(dim, int) and array.shape[axis] != dim:
                    raise DataError(f"input '{spec.name}' has shape {tuple(array.shape)}, "
                                    f"expected {spec.describe()}")

    def describe_inputs(self) -> str:
        return "; ".join(s.describe() for s in self.inputs)


def guess_task(signature: Signature) -> str:
    if len(signature.outputs) == 1 and len(signature.outputs[0].shape) == 2:
        width = signature.outputs[0].shape[1]
        if isinstance(width, int):
            return "classification" if width <= 100 else "embedding"
    return "generic"

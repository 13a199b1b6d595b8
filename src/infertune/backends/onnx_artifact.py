"""The ONNX file an ONNX-consuming runtime loads: the user's file, or the torch model exported once."""

from __future__ import annotations

from pathlib import Path


def onnx_path_for(model, exporter: str) -> Path:
    if model.onnx_path is not None:
        return Path(model.onnx_path)
    from infertune.passes.export import export_onnx

    return Path(export_onnx(model, exporter=exporter).onnx_path)

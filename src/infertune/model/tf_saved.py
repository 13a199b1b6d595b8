"""A TensorFlow SavedModel folder (saved_model.pb), converted to ONNX once through tf2onnx (the optional extra
`infertune[tensorflow]`), then run like any ONNX model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from infertune.model.base import Model
from infertune.model.spec import ModelSpec


def is_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file())


def load(folder: Path, spec: ModelSpec) -> Model:
    from infertune.model import onnx_file, tf_convert

    onnx_path = tf_convert.converted(folder, "saved_model", why=f"'{folder}' is a TensorFlow SavedModel")
    return dataclasses.replace(onnx_file.load(onnx_path, spec), name=folder.resolve().name)

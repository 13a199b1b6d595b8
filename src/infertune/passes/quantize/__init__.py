"""Quantization passes, one file per backend (the technique x backend grid reads from the file names):
`onnx_backend.py` (ONNX Runtime int8 dynamic/static, int4 weight-only, fp16), `openvino_backend.py` (NNCF int8),
`torch_backend.py` (torchao int8)."""

from infertune.passes.quantize import onnx_backend, openvino_backend, torch_backend  # noqa: F401  (registers)

"""Quantization passes, one file per backend (the technique x backend grid reads from the file names):
`onnx_backend.py` (ONNX Runtime int8 dynamic/static, int4 weight-only, fp16), `openvino_backend.py` (NNCF int8),
`torch_backend.py` (torchao int8), `qat.py` (quantization-aware training, exported as int8 ONNX)."""

from infertune.passes.quantize import onnx_backend, openvino_backend, qat, torch_backend  # noqa: F401  (registers)

"""ONNX Runtime on the CPU execution provider (or CUDA where a GPU is visible)."""

from __future__ import annotations

import functools

import numpy as np

from infertune.backends.base import Session, outputs_dict
from infertune.backends.onnx_artifact import onnx_path_for
from infertune.backends.ragged import by_length, in_input_order, length_axes
from infertune.backends.settings import OnnxRuntimeSettings
from infertune.passes.export import onnx_bytes
from infertune.errors import ConfigError

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def unavailable_reason(device: str) -> str | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed (pip install onnxruntime)"
    if PROVIDERS[device] not in ort.get_available_providers():
        return f"{PROVIDERS[device]} is not in this onnxruntime build (install onnxruntime-gpu and a GPU)"
    return None


def session_options(settings: OnnxRuntimeSettings):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[settings.graph_optimization]
    if settings.threads is not None:
        options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    if not settings.spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return options


def disabled_optimizers(settings: OnnxRuntimeSettings) -> list[str]:
    """ONNX Runtime's own graph transformers this session leaves out. On the CPU without `skip_layer_norm`, the
    fusion of Add + LayerNormalization into SkipLayerNormalization: that CPU kernel is the slow one here
    (docs/benchmarks.md, "Passes: minilm on AMX, ONNX Runtime's SkipLayerNormalization"), so the ort-fusion pass
    leaves the pair apart too. CUDA keeps ONNX Runtime's fusions."""
    return [] if settings.skip_layer_norm or settings.device != "cpu" else ["SkipLayerNormFusion"]


class OnnxRuntimeSession(Session):
    def __init__(self, model, settings: OnnxRuntimeSettings):
        import onnxruntime as ort

        if settings.precision != "fp32":
            raise ConfigError(f"onnxruntime runs the graph's own precision, so --precision {settings.precision} "
                              f"does not apply: use torch, torch-compile or openvino for bf16/fp16")
        path = onnx_path_for(model, settings.exporter)
        self.settings = settings
        self.signature = model.signature
        self._path = path
        self._session = ort.InferenceSession(str(path), sess_options=session_options(settings),
                                             providers=[PROVIDERS[settings.device]],
                                             disabled_optimizers=disabled_optimizers(settings))
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._lengths = length_axes(model.signature) if settings.by_length else None
        if self._lengths is not None and self._lengths[0] not in self._inputs:
            self._lengths = None  # a graph that does not read the mask

    @functools.cached_property
    def artifact_bytes(self) -> int:
        return onnx_bytes(self._path)  # read when first asked, after the measurement

    @functools.cached_property
    def precision(self) -> str:
        """The graph's own weights say what runs (fp32, fp16, int8, int4); read when first asked, after timing."""
        from infertune.model.onnx_file import weight_precision

        return weight_precision(self._path)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {n: inputs[n] for n in self._inputs}
        if self._lengths is None or len(feed[self._lengths[0]]) < 2:
            values = self._session.run(self.signature.output_names, feed)
            return outputs_dict(self.signature, [np.asarray(v, dtype=np.float32) for v in values])
        parts, order = by_length(feed, self._lengths)  # one part after the other (ragged.py)
        runs = [self._session.run(self.signature.output_names, part) for part in parts]
        values = [np.concatenate([np.asarray(run[i], dtype=np.float32) for run in runs]) for i in range(len(runs[0]))]
        return outputs_dict(self.signature, in_input_order(values, order))


def load(model, settings: OnnxRuntimeSettings) -> OnnxRuntimeSession:
    return OnnxRuntimeSession(model, settings)

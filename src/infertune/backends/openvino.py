"""OpenVINO on the CPU plugin, always with an explicit inference precision hint.

Unset, this CPU's plugin silently runs bf16 (it has AMX): a result reported as fp32 must have run fp32,
so the hint is always set and the precision actually compiled is read back.
"""

from __future__ import annotations

import collections
import functools
import time
from pathlib import Path

import numpy as np

from infertune.backends.base import Session, outputs_dict
from infertune.backends.onnx_artifact import onnx_path_for
from infertune.backends.ragged import by_length, in_input_order, length_axes
from infertune.backends.settings import STATIC_COMPILES_MAX, STATIC_SHAPES_KEPT, OpenVINOSettings
from infertune.passes.export import onnx_bytes
from infertune.errors import ConfigError

HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def ir_bytes(xml: Path) -> int:
    """An IR is the .xml graph plus the .bin weights beside it."""
    xml = Path(xml)
    return xml.stat().st_size + (xml.with_suffix(".bin").stat().st_size if xml.with_suffix(".bin").exists() else 0)


def _weight_precision(ir_path, onnx_path) -> str:
    if ir_path is None:
        from infertune.model.onnx_file import weight_precision

        return weight_precision(onnx_path)
    text = Path(ir_path).read_text(errors="ignore")
    return "int8" if ('element_type="i8"' in text or 'element_type="u8"' in text or "FakeQuantize" in text) else "fp32"


def unavailable_reason(device: str) -> str | None:
    if device != "cpu":
        return "infertune runs OpenVINO on the CPU only"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "openvino is not installed (pip install openvino)"
    return None


class OpenVINOSession(Session):
    def __init__(self, model, settings: OpenVINOSettings):
        import openvino as ov

        if settings.precision not in HINTS:
            raise ConfigError(f"openvino precision '{settings.precision}' is not one of {', '.join(HINTS)}")
        path = model.ir_path or onnx_path_for(model, settings.exporter)
        config = {"INFERENCE_PRECISION_HINT": HINTS[settings.precision],
                  "PERFORMANCE_HINT": settings.performance_hint}
        if settings.threads is not None:
            config["INFERENCE_NUM_THREADS"] = settings.threads
        if settings.streams is not None:
            config["NUM_STREAMS"] = settings.streams
        if settings.split > 1:  # streams under split are refused when the settings are built
            config["NUM_STREAMS"] = max(settings.split, settings.streams or 1)
        self._core, self._config = ov.Core(), config
        self._graph = self._core.read_model(str(path))
        # the dynamic-shape model always exists: it answers what ran (the precision read back) and, with
        # shapes=static, runs every shape until it has earned a model of its own
        started = time.perf_counter()
        self._compiled = self._core.compile_model(self._graph, "CPU", config)
        self.compile_s = time.perf_counter() - started  # what one more compile is expected to cost
        self._requests = self._new_requests(self._compiled, settings.split)  # one per part of a split batch
        self._static: collections.OrderedDict[tuple, list] = collections.OrderedDict()
        self._earned: collections.OrderedDict[tuple, float] = collections.OrderedDict()  # dynamic seconds a shape
        self.compiles = 0
        self._inputs = [port_name(port, model.signature.input_names) for port in self._compiled.inputs]
        self.settings = settings
        self.signature = model.signature
        # a batch splits only where every output holds one row per input row (its first axis is the batch's)
        self._splits = settings.split > 1 and all(spec.shape and isinstance(spec.shape[0], str)
                                                  for spec in model.signature.outputs)
        self._lengths = length_axes(model.signature) if settings.by_length else None
        if self._lengths is not None and self._lengths[0] not in self._inputs:
            self._lengths = None  # a graph that does not read the mask
        ran = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        self._compute = {ov.Type.f32: "fp32", ov.Type.bf16: "bf16", ov.Type.f16: "fp16"}.get(ran, str(ran))
        self._paths = (model.ir_path, path)

    @staticmethod
    def _new_requests(compiled, count: int) -> list:
        return [compiled.create_infer_request() for _ in range(count)]

    def _parts(self, feed: dict[str, np.ndarray]) -> tuple[list[dict[str, np.ndarray]], np.ndarray | None]:
        """(parts, order): `feed` as `split` runs of consecutive rows, run at once on as many streams (whole when
        the batch has fewer rows), and None. Two parts on two cores, one thread each, wait on no thread of the
        other's: MiniLM NNCF int8 at batch 32 ran 1.02x to 1.12x faster split in two (README, the backends'
        settings). With `by_length`, rows sorted by length, in parts of balanced work under split (else the cut of
        least work, run one after the other), and the order they came in (`ragged.by_length`)."""
        rows = len(next(iter(feed.values())))
        if self._lengths is not None and rows > 1:
            return by_length(feed, self._lengths, parallel=self.settings.split if self._splits else 0)
        if not self._splits or rows < self.settings.split:
            return [feed], None
        bounds = np.linspace(0, rows, self.settings.split + 1).round().astype(int)
        return [{name: array[a:b] for name, array in feed.items()} for a, b in zip(bounds[:-1], bounds[1:])], None

    def _request_for(self, feed: dict[str, np.ndarray]) -> tuple[list, tuple | None]:
        """The requests to run `feed` on (one per part of a split batch), and the shape to credit with the call's
        time: None, unless the call runs on the dynamic graph while its shape earns a static model.

        With shapes=static, a shape gets a model compiled for exactly it, once the calls at that shape have spent
        on the dynamic graph as long as a compile takes (ski rental: a shape met once, as in a single pass over
        data, never pays a compile, and one met often pays at most twice what an oracle would). A static graph
        lets the CPU plugin fuse and plan more: MiniLM NNCF int8 on AMX, 1.15x at batch 32 and 1.09x at batch 1
        over the dynamic graph (docs/benchmarks.md, "Passes: minilm on AMX, OpenVINO static shapes"). The
        STATIC_SHAPES_KEPT last used are kept (one dropped earns its model again); after STATIC_COMPILES_MAX
        compiles, shapes not kept run dynamic."""
        if self.settings.shapes == "dynamic":
            return self._requests, None
        key = tuple(feed[name].shape for name in self._inputs)
        requests = self._static.get(key)
        if requests is not None:
            self._static.move_to_end(key)
            return requests, None
        if self.compiles >= STATIC_COMPILES_MAX:
            return self._requests, None
        if self._earned.get(key, 0.0) < self.compile_s:
            return self._requests, key
        del self._earned[key]
        return self._compile(key), None

    def _compile(self, key: tuple):
        import openvino as ov

        started = time.perf_counter()
        graph = self._graph.clone()
        try:
            graph.reshape({port: ov.PartialShape(list(shape)) for port, shape in zip(graph.inputs, key)})
            requests = self._new_requests(self._core.compile_model(graph, "CPU", self._config), self.settings.split)
            self.compile_s = time.perf_counter() - started
        except RuntimeError:  # a graph that cannot take these shapes statically runs them dynamically
            requests = self._requests
        self.compiles += 1
        self._static[key] = requests
        if len(self._static) > STATIC_SHAPES_KEPT:
            self._static.popitem(last=False)
        return requests

    def _earn(self, key: tuple, seconds: float) -> None:
        self._earned[key] = self._earned.get(key, 0.0) + seconds
        self._earned.move_to_end(key)
        if len(self._earned) > 64 * STATIC_SHAPES_KEPT:  # bounded: the shape met longest ago starts over
            self._earned.popitem(last=False)

    def expect(self, batches: list[dict[str, np.ndarray]]) -> None:
        """A benchmark will run `batches` over and over: with shapes=static, compile now the shapes its calls
        would earn models for, the most frequent first and at most as many as are kept, so timed runs see the
        steady state and not the compiles on the way to it."""
        if self.settings.shapes == "dynamic":
            return
        counts = collections.Counter(tuple(part[name].shape for name in self._inputs)
                                     for batch in batches for part in self._parts(batch)[0])
        for key, _ in counts.most_common(STATIC_SHAPES_KEPT):
            if key not in self._static and self.compiles < STATIC_COMPILES_MAX:
                self._earned.pop(key, None)
                self._compile(key)

    @functools.cached_property
    def artifact_bytes(self) -> int:
        ir_path, onnx_path = self._paths
        return ir_bytes(ir_path) if ir_path else onnx_bytes(onnx_path)

    @functools.cached_property
    def precision(self) -> str:
        """int8 layers run int8 whatever the hint; the float parts run at the hint's precision (read back)."""
        weights = _weight_precision(*self._paths)
        return self._compute if weights == "fp32" else f"{weights}+{self._compute}"

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        parts, order = self._parts({n: inputs[n] for n in self._inputs})
        if order is not None and not self._splits:  # cut by length, run one part after the other
            values = [self._run([part]) for part in parts]
            values = [np.concatenate([each[i] for each in values]) for i in range(len(values[0]))]
        else:
            values = self._run(parts)
        return outputs_dict(self.signature, values if order is None else in_input_order(values, order))

    def _run(self, parts: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """The outputs of `parts`, run at once (one request each), concatenated in part order."""
        chosen = [self._request_for(part) for part in parts]
        running = [requests[slot] for slot, (requests, _) in enumerate(chosen)]  # parts of one shape: own requests
        started = time.perf_counter()
        if len(parts) == 1:
            running[0].infer(parts[0])
        else:
            for request, part in zip(running, parts):
                request.start_async(part)
            for request in running:
                request.wait()
        seconds = time.perf_counter() - started
        for earning in {earning for _, earning in chosen if earning is not None}:  # parts ran at once: once each
            self._earn(earning, seconds)
        return [np.concatenate([request.get_output_tensor(i).data for request in running]).astype(np.float32)
                if len(running) > 1 else running[0].get_output_tensor(i).data.astype(np.float32, copy=True)
                for i in range(len(self._compiled.outputs))]


def port_name(port, wanted: list[str]) -> str:
    """The model's own name for an input port. A port carries every name its tensor had in the source graph: where
    the input feeds a no-op OpenVINO folds away (the Cast a Keras export starts with), the Cast's output name is
    one of them, and `get_any_name` may answer with it."""
    names = port.get_names()
    return next((name for name in wanted if name in names), port.get_any_name())


def load(model, settings: OpenVINOSettings) -> OpenVINOSession:
    return OpenVINOSession(model, settings)

"""Several backends on one model, each measured apart, with every backend's outputs checked against a
reference (torch eager fp32 for a torch model, ONNX Runtime unoptimised for an ONNX file, OpenVINO fp32 for an
OpenVINO IR)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from infertune.bench.isolated import run_isolated
from infertune.bench.job import BenchJob, Timing, collect_outputs, run_job
from infertune.bench.result import BenchResult

ONNX_BACKENDS = ("onnxruntime", "openvino", "onnxruntime-cuda")


def reference_outputs(model, split, count: int) -> dict[str, np.ndarray]:
    from infertune.backends import load_session

    if model.module is not None:
        session = load_session(model, "torch")
    elif model.format == "openvino":  # an IR (a run directory's NNCF artifact, say): fp32 on its own runtime
        session = load_session(model, "openvino", precision="fp32")
    else:
        session = load_session(model, "onnxruntime", graph_optimization="disable")
    return collect_outputs(session, model, split, count)


def fidelity(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray], labels=None) -> dict[str, float]:
    """Metrics of the first output against the reference (cosine, top-1 agreement, neighbours...)."""
    from infertune.data import compare_outputs

    name = next(iter(reference))
    if name not in outputs:
        return {}
    count = len(outputs[name])
    return compare_outputs(reference[name][:count], outputs[name],
                           labels=None if labels is None else labels[:count])


def bench_backends(model, configs: list[tuple[str, dict[str, Any]]], *, data=None, batch_sizes=(1, 32),
                   timing: Timing = Timing(), isolate: bool = True, timeout: float = 900.0, fidelity_samples: int = 256,
                   progress: Callable[[str, str], None] | None = None) -> list[BenchResult]:
    """`model` and `data` (a Dataset, or None for random inputs) as `infertune.resolve` gives them; `configs`:
    (backend, options) pairs. Isolated workers reload both from their specs. `progress(config_label, stage)`
    reports what runs. Example: `bench_backends(*infertune.resolve("digits-cnn"), [("onnxruntime", {})])`."""
    split = data.split("heldout") if data is not None else None
    data_name = data.name if data is not None else None
    data_spec = data.spec.to_dict() if data is not None and data.spec is not None else None
    if isolate and data is not None and data.spec is None:
        from infertune.errors import ConfigError

        raise ConfigError("isolated measurement reloads the data in a fresh process: pass data as a zoo name or a "
                          "file, or measure in process")
    _check_formats(model, [backend for backend, _ in configs])
    reference = reference_outputs(model, split, fidelity_samples) if split is not None else None
    results = []
    exports: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="infertune-suite-") as tmp:
        for index, (backend, options) in enumerate(configs):
            label = f"{backend} {options}" if options else backend
            onnx_path = None
            if backend in ONNX_BACKENDS and model.module is not None:
                exporter = options.get("exporter", "torchscript")
                if exporter not in exports:  # once per exporter, shared by the ONNX runtimes
                    exports[exporter] = _exported(model, exporter, progress, label)
                onnx_path = exports[exporter]
                if not isinstance(onnx_path, str):
                    results.append(BenchResult(model=model.name, backend=backend, settings=dict(options),
                                               error=str(onnx_path)))
                    continue
            elif model.onnx_path is not None:
                onnx_path = str(model.onnx_path)
            outputs_path = str(Path(tmp) / f"outputs-{index}.npz")
            job = BenchJob(model=model.spec.to_dict(), backend=backend, options=dict(options), data=data_spec,
                           onnx_path=onnx_path, batch_sizes=tuple(batch_sizes), timing=timing,
                           outputs_path=outputs_path, fidelity_samples=fidelity_samples)
            report = (lambda stage, label=label: progress(label, stage)) if progress else None
            if isolate:
                result = run_isolated(job, timeout=timeout, progress=report)
            else:
                result = _in_process(job, model, split, data_name, report)
            if result.ok and reference is not None and Path(outputs_path).is_file():
                with np.load(outputs_path) as saved:
                    result.fidelity = fidelity(reference, dict(saved), split.labels)
            results.append(result)
    return results


def _check_formats(model, backends: list[str]) -> None:
    """A backend that cannot run this kind of model is the user's input error, caught before anything runs."""
    from infertune.backends import BACKENDS
    from infertune.errors import ConfigError

    for backend in backends:
        if backend in BACKENDS and model.format not in BACKENDS[backend].formats:
            able = [name for name, entry in BACKENDS.items() if model.format in entry.formats]
            raise ConfigError(f"backend '{backend}' cannot run a {model.format} model ('{model.name}'): "
                              f"use {', '.join(able)}")


def _exported(model, exporter: str, progress, label: str) -> str | Exception:
    """The exported file's path, or the error that stopped the export (recorded against each row)."""
    from infertune.errors import InfertuneError
    from infertune.passes.export import export_onnx

    if progress:
        progress(label, f"exporting to ONNX ({exporter})")
    try:
        return str(export_onnx(model, exporter=exporter).onnx_path)
    except InfertuneError as e:
        return e


def _in_process(job: BenchJob, model, split, data_name, report) -> BenchResult:
    from infertune.errors import InfertuneError
    from infertune.model.onnx_file import with_artifact

    try:
        measured = model if job.onnx_path is None or model.onnx_path is not None else with_artifact(model, job.onnx_path)
        return run_job(job, model=measured, split=split, data_name=data_name, progress=report)
    except InfertuneError as e:
        return BenchResult(model=model.name, backend=job.backend, settings=dict(job.options), error=str(e))

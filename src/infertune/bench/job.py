"""One measurement: a model on one backend with its settings, over a workload. Runs in this process or,
through `isolated.py`, in a fresh one so runtimes don't share threads and memory."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from infertune.bench import hardware, memory, timing
from infertune.bench.result import BenchResult
from infertune.bench.workload import build_workload


@dataclass(frozen=True)
class Timing:
    warmup: int = 3
    min_runs: int = 50
    min_seconds: float = 2.0
    max_runs: int = 5000
    max_seconds: float = 30.0


@dataclass(frozen=True)
class BenchJob:
    model: str                       # spec that reloads the model: zoo name, .onnx path, pkg.mod:fn
    backend: str
    options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    data: str | None = None          # zoo data set or .npz; None = the model's default data, if any
    onnx_path: str | None = None     # already exported ONNX for ONNX runtimes (skips torch in the worker)
    batch_sizes: tuple[int, ...] = (1, 32)
    timing: Timing = Timing()
    outputs_path: str | None = None  # where to save outputs on the first `fidelity_samples` held-out samples
    fidelity_samples: int = 256

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchJob":
        data = dict(data)
        data["timing"] = Timing(**data.get("timing", {}))
        data["batch_sizes"] = tuple(data["batch_sizes"])
        return cls(**data)


def load_for_job(job: BenchJob):
    """The model and its held-out split (or None) for a job."""
    from infertune.data import load_dataset
    from infertune.model import ZOO, load_model
    from infertune.model.onnx_file import load as load_onnx
    from infertune.model.zoo import zoo_onnx

    data_name = job.data
    dataset = None
    if data_name is None and job.model in ZOO:
        data_name = ZOO[job.model].default_data
    if job.onnx_path is not None and not Path(job.model).is_dir():  # a run directory loads its own artifact
        model = zoo_onnx(job.model, job.onnx_path) if job.model in ZOO else load_onnx(job.onnx_path)
    else:
        arrays = None
        if data_name is not None and job.model not in ZOO and not job.model.endswith(".onnx"):
            arrays = any_arrays(load_dataset(data_name))
        model = load_model(job.model, weights=job.weights, data=arrays)
    if data_name is None and model.default_data is not None:
        data_name = model.default_data
    if data_name is not None:
        dataset = load_dataset(data_name, input_specs=model.input_specs)
    split = dataset.split("heldout") if dataset is not None else None
    return model, split, data_name


def any_arrays(dataset) -> dict[str, np.ndarray] | None:
    """Arrays of some split, enough to fix a factory model's input shapes."""
    split = dataset.splits.get("all") or next(iter(dataset.splits.values()))
    return split.inputs


def collect_outputs(session, model, split, count: int, batch: int = 32) -> dict[str, np.ndarray]:
    """Outputs on the first `count` samples, in fixed batches so every backend sees the same padding."""
    count = min(count, len(split))
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, count, batch):
        out = session.run(model.inputs_for(split, np.arange(start, min(start + batch, count))))
        for name, value in out.items():
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in parts.items()
            if len({v.shape[1:] for v in values}) == 1}


def _torch_threads() -> int | None:
    import sys

    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _restore_torch_threads(threads: int | None) -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def run_job(job: BenchJob, *, model=None, split=None, data_name: str | None = None,
            progress: Callable[[str], None] | None = None) -> BenchResult:
    from infertune.backends import load_session, make_backend_settings

    if model is None:
        model, split, data_name = load_for_job(job)
    settings = make_backend_settings(job.backend, **job.options)
    workload = build_workload(model, split, job.batch_sizes, data_name=data_name)
    peak_resettable = memory.reset_peak_rss()  # from here on: the runtime, its model and the timed runs
    if progress:
        progress("loading")
    threads_before = _torch_threads()
    try:
        began = time.perf_counter()
        session = load_session(model, job.backend, settings)
        load_seconds = time.perf_counter() - began
        t = job.timing
        stats = timing.measure(session, workload, warmup=t.warmup, min_runs=t.min_runs, min_seconds=t.min_seconds,
                               max_runs=t.max_runs, max_seconds=t.max_seconds, progress=progress)
        peak = memory.peak_rss_bytes()
        if job.outputs_path is not None and split is not None:
            from infertune.data.npz import save_npz

            save_npz(Path(job.outputs_path), collect_outputs(session, model, split, job.fidelity_samples))
    finally:
        _restore_torch_threads(threads_before)  # a session's thread setting must not leak into the next one
    return BenchResult(model=model.name, backend=job.backend, settings=asdict(settings),
                       precision=session.precision, artifact_bytes=session.artifact_bytes,
                       load_seconds=load_seconds, latency=stats, peak_rss_bytes=peak if peak_resettable else None,
                       workload=workload.description, hardware=hardware.fingerprint(),
                       versions=hardware.versions())

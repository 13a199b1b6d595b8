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
    model: dict[str, Any]            # a ModelSpec as a dict: what reloads the model in the worker
    backend: str
    options: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] | None = None  # a DataSpec as a dict; None = no data (random inputs)
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


def collect_outputs(session, model, split, count: int, batch: int = 32) -> dict[str, np.ndarray]:
    """Outputs on the first `count` samples, in sample order, computed in fixed batches of samples in a fixed
    shuffled order: every backend sees the same padding, and it is the padding of requests batched as they arrive
    (texts of mixed lengths), not that of a split whose neighbours have similar lengths. Outputs whose length
    follows the batch's (per-token scores) are zero-padded to the longest batch."""
    count = min(count, len(split))
    order = np.random.default_rng(0).permutation(count)
    batches = [np.sort(order[start:start + batch]) for start in range(0, count, batch)]
    parts: dict[str, list[np.ndarray]] = {}
    for indices in batches:
        for name, value in session.run(model.inputs_for(split, indices)).items():
            parts.setdefault(name, []).append(value)
    back = np.argsort(np.concatenate(batches))  # row i of the result is sample i
    return {name: np.concatenate(pad_to_common(values))[back] for name, values in parts.items()}


def pad_to_common(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Arrays zero-padded, past the first axis, to the largest shape among them."""
    if len({a.shape[1:] for a in arrays}) <= 1:
        return arrays
    shape = np.max([a.shape[1:] for a in arrays], axis=0)
    return [np.pad(a, [(0, 0)] + [(0, int(m) - d) for m, d in zip(shape, a.shape[1:])]) for a in arrays]


def _torch_threads() -> int | None:
    import sys

    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _restore_torch_threads(threads: int | None) -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def run_job(job: BenchJob, *, model, split=None, data_name: str | None = None,
            progress: Callable[[str], None] | None = None) -> BenchResult:
    """Measure `model` (the job's model, loaded) on the job's backend over `split` (held-out samples, or None for
    random inputs)."""
    from infertune.backends import load_session, make_backend_settings

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
        grouped = timing.measure(session, workload.only_grouped(), warmup=t.warmup, min_runs=t.min_runs,
                                 min_seconds=t.min_seconds, max_runs=t.max_runs, max_seconds=t.max_seconds,
                                 progress=progress) if workload.grouped else []
        peak = memory.peak_rss_bytes()
        if job.outputs_path is not None and split is not None:
            from infertune.data.npz import save_npz

            save_npz(Path(job.outputs_path), collect_outputs(session, model, split, job.fidelity_samples))
    finally:
        _restore_torch_threads(threads_before)  # a session's thread setting must not leak into the next one
    return BenchResult(model=model.name, backend=job.backend, settings=asdict(settings),
                       precision=session.precision, artifact_bytes=session.artifact_bytes,
                       load_seconds=load_seconds, latency=stats, grouped=grouped, peak_rss_bytes=peak if peak_resettable else None,
                       workload=workload.description, hardware=hardware.fingerprint(),
                       versions=hardware.versions())

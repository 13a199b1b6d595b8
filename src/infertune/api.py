"""The public verbs that take what a user names (`optimize`, `benchmark`, `apply_passes`): each resolves it with
`infertune.resolve`, then calls the layer below with objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from infertune.bench.job import Timing
from infertune.data.spec import DEFAULT_LABEL_FIELD, DEFAULT_TEXT_FIELD
from infertune.errors import ConfigError
from infertune.resolver import resolve


def optimize(model, *, data=None, weights: str | None = None, task: str | None = None, pooling: str | None = None,
             heldout: str | None = None, text_field: str = DEFAULT_TEXT_FIELD, label_field: str = DEFAULT_LABEL_FIELD,
             num_heads: int | None = None, hidden_size: int | None = None, max_drop: float = 0.01,
             min_top10: float = 0.9, objective: str = "latency", batch_size: int = 1, time_budget: float | None = None,
             out: str | Path | None = None, resume: bool = False, recipes=None, trial_timeout: float = 900.0,
             timing: dict | None = None, progress: Callable[[str, str], None] | None = None,
             say: Callable[[str], None] | None = None, ray: str | None = None, refine: bool | None = None):
    """Find the fastest (or smallest) artifact within `max_drop` of the baseline on held-out data (and, for
    embeddings, keeping at least `min_top10` of each sample's ten nearest neighbours). `model` and `data` are
    anything `infertune.resolve` reads (or what it returned). `say` gets notes as they happen (a cut line of
    trials.jsonl skipped on resume). `ray`: run the trials on a Ray cluster (its address, or 'local'), one per
    node at a time. `refine`: after the candidates, try the runtime settings (threads, spinning, graph level,
    OpenVINO hint and streams, torch.compile mode) of the baseline's recipe and the leader's; by default when
    searching, not when `recipes` are given.

    Example: `infertune.optimize("./my-model", data="reviews.jsonl", max_drop=0.01, out="runs/x").best["recipe"]`.
    """
    from infertune.search.run import run_search

    source, dataset = resolve(model, data=data, weights=weights, task=task, pooling=pooling, num_heads=num_heads,
                              hidden_size=hidden_size, heldout=heldout, text_field=text_field, label_field=label_field)
    return run_search(source, dataset, max_drop=max_drop, min_top10=min_top10, objective=objective,
                      batch_size=batch_size, time_budget=time_budget, out=out, resume=resume, recipes=recipes,
                      trial_timeout=trial_timeout, timing=timing, progress=progress, say=say, ray=ray,
                      refine=refine)


def benchmark(model, *, backend: str = "torch", data=None, batch_sizes=(1, 32), isolate: bool = False,
              timing: Timing = Timing(), weights: str | None = None, task: str | None = None, timeout: float = 900.0,
              **options: Any):
    """Measure one model on one backend: latency p50/p90/p99 per batch size, throughput, size, peak memory.

    `model` is anything `infertune.resolve` reads, or a loaded `Model`; `isolate=True` measures in a fresh process,
    which reloads the model from its spec (a Model changed in memory cannot be reloaded: pass its spec, or a Model
    backed by a file). Example: `benchmark("digits-cnn", backend="onnxruntime", threads=1)`.
    """
    from infertune.bench.job import BenchJob, run_job
    from infertune.model import Model

    loaded, dataset = resolve(model, data=data, weights=weights, task=task)
    split = dataset.split("heldout") if dataset is not None else None
    if not isolate:
        job = BenchJob(model=loaded.spec.to_dict(), backend=backend, options=options, batch_sizes=tuple(batch_sizes),
                       timing=timing)
        return run_job(job, model=loaded, split=split, data_name=dataset.name if dataset is not None else None)
    if isinstance(model, Model) and model.module is not None:
        raise ConfigError("isolate=True reloads the model in a fresh process from its spec, which a torch Model "
                          "changed in memory does not match: pass the spec (zoo name, path or pkg.mod:fn)")
    if dataset is not None and dataset.spec is None:
        raise ConfigError("isolate=True reloads the data in a fresh process: pass data as a zoo name or a file")
    from infertune.bench.isolated import run_isolated
    from infertune.errors import InfertuneError

    artifact = str(loaded.onnx_path) if loaded.onnx_path is not None else None
    job = BenchJob(model=loaded.spec.to_dict(), backend=backend, options=options, onnx_path=artifact,
                   data=dataset.spec.to_dict() if dataset is not None else None, batch_sizes=tuple(batch_sizes),
                   timing=timing)
    result = run_isolated(job, timeout=timeout)
    if not result.ok:
        raise InfertuneError(f"benchmark of {loaded.name} on {backend} failed: {result.error}")
    return result


def apply_passes(model, passes: list[Any], *, data=None, weights: str | None = None, task: str | None = None,
                 workdir: str | Path | None = None, progress=None):
    """Apply passes in order to a model; returns the final model and each pass's output (notes, details).

    `model` and `data` are anything `infertune.resolve` reads; passes use the data's train and calibration
    splits, never the held-out one. `workdir` is where artifacts go (a new temporary folder when omitted).
    Example: `infertune.apply_passes("minilm", [ExportOnnx(), OrtFusion(), Int8Dynamic()])`.
    """
    from infertune.passes import apply_passes as apply_all

    loaded, dataset = resolve(model, data=data, weights=weights, task=task)
    return apply_all(loaded, passes, data=dataset, workdir=workdir, progress=progress)

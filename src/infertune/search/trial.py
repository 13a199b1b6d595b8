"""One trial: apply a recipe, then measure the artifact (held-out metric, latency, throughput, size) and its
speed against the baseline, interleaved in the same process. Runs inside `worker.py`, a fresh process with a
time limit, so a crash, hang or out-of-memory in a runtime is a failed trial, never a failed search."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infertune.bench.job import Timing, collect_outputs
from infertune.search.recipe import Recipe
from infertune.search.records import Compute, Latency, Metric, Speedup, Throughput, TrialRecord

METRIC_SAMPLES = 512
BLOCK_S = 0.05  # seconds of calls in one block of the interleaved comparison
SPREAD_LIMIT = 2.0  # p90 / p10 of the per-round ratios past which a speed-up is measured again
AGREE_LIMIT = 1.25  # median of ratios vs ratio of pooled medians: past it, measured again


@dataclass(frozen=True)
class TrialJob:
    id: str
    model: dict[str, Any]          # a ModelSpec as a dict: the worker resolves it
    recipe: dict[str, Any]
    workdir: str
    baseline_recipe: dict[str, Any]
    baseline_outputs: str          # .npz of the baseline's held-out outputs (written by the baseline trial)
    data: dict[str, Any] | None = None  # a DataSpec as a dict
    batch_size: int = 1
    throughput_batch: int = 32
    objective: str = "latency"
    timing: dict[str, Any] = field(default_factory=lambda: asdict(Timing(min_runs=30, min_seconds=1.0)))
    rounds: int = 8
    confirm: bool = False  # only the interleaved comparison, measured afresh (the check before a best is written)


def metric(task: str, outputs: np.ndarray, labels, reference: np.ndarray | None) -> Metric:
    """Top-1 accuracy with labels; else fidelity to the baseline: top-1 agreement or mean cosine. Embeddings
    also carry their top-10 neighbour agreement with the baseline and their worst row's cosine, which the budget
    guards as well."""
    from infertune.data.metrics import NEIGHBOURS, cosine_similarity_stats, neighbour_agreement, top1_accuracy, \
        top1_agreement

    if task == "classification" and labels is not None:
        return Metric("top1", top1_accuracy(outputs, labels[:len(outputs)]))
    if task == "classification":
        return Metric("top1_agreement", 1.0 if reference is None else top1_agreement(reference, outputs))
    outputs = outputs.reshape(len(outputs), -1)  # per-token scores compare as one row per sample
    reference = None if reference is None else reference.reshape(len(reference), -1)
    cosine, worst = (1.0, 1.0) if reference is None else cosine_similarity_stats(reference, outputs)
    if len(outputs) <= NEIGHBOURS:
        return Metric("cosine", cosine, worst_row=worst)
    top10 = 1.0 if reference is None else neighbour_agreement(reference, outputs)
    return Metric("cosine", cosine, top10_agreement=top10, worst_row=worst)


PADDED_LENGTHS = (16, 32, 64, 128)


def padded_outputs(session, model, split, samples: int = 32, among: int = 512) -> dict[str, np.ndarray]:
    """The first output at each of PADDED_LENGTHS ("padded32": ...), on one batch of the first `samples` held-out
    samples (of the first `among`) no longer than that length, padded to it. The baseline's are the reference for
    a candidate's: the attention mask hides padding from the model, so where a candidate's rows move and the
    baseline's do not, a runtime kernel chosen for one shape moved them. OpenVINO 2026.4's CPU plugin runs NNCF
    int8 MiniLM under the bf16 hint with rows down to cosine 0.80 (batches of 32) or 0.94 (batches of 4) at
    exactly 32 tokens, and right from 33 to 64, so a sample of natural lengths rarely shows it. Empty for a model
    without a 2-D `attention_mask` input."""
    if split is None or "attention_mask" not in model.signature.input_names:
        return {}
    pool = np.arange(min(among, len(split)))
    masks = model.inputs_for(split, pool)["attention_mask"]
    if masks.ndim != 2:
        return {}
    lengths = (masks != 0).sum(1)
    found = {}
    for length in PADDED_LENGTHS:
        chosen = pool[lengths <= length][:samples]
        if len(chosen) < min(samples, 4):
            continue
        batch = model.inputs_for(split, chosen)
        longest = batch["attention_mask"].shape[1]
        padded = {name: np.pad(v, [(0, 0), (0, length - longest)] + [(0, 0)] * (v.ndim - 2))
                  if v.ndim >= 2 and v.shape[1] == longest else v for name, v in batch.items()}
        try:
            found[f"padded{length}"] = next(iter(session.run(padded).values()))
        except Exception:  # noqa: BLE001  (longer than the model takes: not what this checks)
            break
    return found


def padding_moves(padded: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float | None:
    """The lowest row cosine between a candidate's padded outputs and the baseline's at the same lengths."""
    from infertune.data.metrics import row_cosines

    worst = None
    for name, got in padded.items():
        want = reference.get(name)
        if want is None or want.shape != got.shape:
            continue
        low = float(row_cosines(want.reshape(len(want), -1), got.reshape(len(got), -1)).min())
        worst = low if worst is None else min(worst, low)
    return worst


def run_trial(job: TrialJob, model, dataset, say=print) -> TrialRecord:
    """Build and measure one candidate of `model` (loaded from the job's spec) on `dataset`."""
    from infertune.backends import load_session
    from infertune.bench import memory, timing
    from infertune.bench.workload import build_workload
    from infertune.data import save_npz

    heldout = dataset.split("heldout") if dataset is not None else None
    data_name = dataset.name if dataset is not None else None
    recipe = Recipe.from_dict(job.recipe)
    artifact, outputs = _build(job, model, recipe, dataset, say)
    if job.confirm:
        return _confirm(job, model, artifact, recipe, heldout, data_name, say)
    memory.reset_peak_rss()
    say("loading")
    session = load_session(artifact, recipe.backend, **recipe.backend_options)
    say("held-out outputs")
    out = collect_outputs(session, artifact, heldout, METRIC_SAMPLES) if heldout is not None else {}
    first = next(iter(out.values())) if out else None
    is_baseline = job.recipe == job.baseline_recipe
    padded = padded_outputs(session, artifact, heldout) if first is not None else {}
    if is_baseline and first is not None:
        save_npz(job.baseline_outputs, {"output": first, **padded})
    reference, saved_padded = None, {}
    if not is_baseline and Path(job.baseline_outputs).is_file():
        with np.load(job.baseline_outputs) as saved:
            reference = saved["output"]
            saved_padded = {name: saved[name] for name in saved.files if name.startswith("padded")}
    measured = metric(model.task, first, heldout.labels if heldout is not None else None, reference) \
        if first is not None else Metric("none", float("nan"))
    moved = padding_moves(padded, saved_padded)
    if moved is not None and measured.worst_row is not None:
        measured = dataclasses.replace(measured, worst_row=min(measured.worst_row, moved))
    sizes = tuple(sorted({job.batch_size, job.throughput_batch}))
    workload = build_workload(artifact, heldout, sizes, data_name=data_name)
    t = job.timing
    say("timing")
    stats = {s.batch: s for s in timing.measure(session, workload, warmup=t["warmup"], min_runs=t["min_runs"],
                                                min_seconds=t["min_seconds"], max_runs=t["max_runs"],
                                                max_seconds=t["max_seconds"])}
    peak = memory.peak_rss_bytes()
    grouped = None
    if workload.grouped.get(job.throughput_batch):  # texts: as users batch them, similar lengths together
        similar = timing.measure(session, workload.only_grouped(), warmup=t["warmup"], min_runs=t["min_runs"],
                                 min_seconds=t["min_seconds"], max_runs=t["max_runs"], max_seconds=t["max_seconds"])
        grouped = next(s.items_per_s for s in similar if s.batch == job.throughput_batch)
    result = TrialRecord(
        id=job.id, recipe=job.recipe, backend=recipe.backend, precision=session.precision,
        metric=measured, latency=_latency(stats[job.batch_size]),
        throughput=Throughput(job.throughput_batch, stats[job.throughput_batch].items_per_s, grouped),
        size_bytes=session.artifact_bytes, peak_rss_bytes=peak,
        notes=tuple(note for o in outputs for note in o.notes),
        details={k: v for o in outputs for k, v in o.details.items() if k in ("sensitivity", "kept_float")},
        train_seconds=_train_seconds(outputs), artifact=_artifact_path(artifact),
        compute=_compute(model, outputs, workload.batches[job.batch_size][0], stats[job.batch_size].p50_ms,
                         session.precision))
    if is_baseline:
        return result
    say("interleaved comparison with the baseline")
    base = Recipe.from_dict(job.baseline_recipe)
    baseline = load_session(model, base.backend, **base.backend_options)
    batch = job.throughput_batch if job.objective == "throughput" else job.batch_size
    batches = _objective_batches(workload, batch, job.objective)
    return result.replace(speedup=speedup(baseline, session, batches, rounds=job.rounds, p50_ms=stats[batch].p50_ms,
                                          say=say))


BUILT = "built.json"  # in a trial's build folder: the passes it applied and the file they made


def _build(job: TrialJob, model, recipe: Recipe, dataset, say):
    """(artifact, pass outputs) of the recipe's passes. Where an earlier trial of this run built the same passes
    into a file (an ONNX graph, an OpenVINO IR), that file is run again: a settings variant, or a leader confirmed,
    runs its leader's artifact, so refine spends its time measuring, not rebuilding (NNCF calibrates MiniLM for
    about 15 s). Else the passes are applied here, and the file recorded for the trials after this one."""
    import json

    from infertune.io import write_json_atomic
    from infertune.model.onnx_file import with_artifact
    from infertune.passes.registry import PassOutput
    from infertune.search.recipe import apply_recipe

    passes = recipe.to_dict()["passes"]
    for found in sorted(Path(job.workdir).parent.glob(f"*/build/{BUILT}")) if passes else ():
        try:
            saved = json.loads(found.read_text())
        except (OSError, ValueError):
            continue
        if saved.get("passes") == passes and Path(saved.get("artifact", "")).is_file():
            say(f"running the artifact {found.parent.parent.name} built")
            artifact = with_artifact(model, saved["artifact"])
            artifact = dataclasses.replace(artifact, meta={**artifact.meta, **saved["meta"]})
            return artifact, [PassOutput(artifact, notes=notes, details=details) for notes, details in saved["outputs"]]
    say("applying passes")
    build = Path(job.workdir) / "build"
    artifact, outputs = apply_recipe(model, recipe, data=dataset, workdir=build, progress=lambda s: say(s))
    path = _artifact_path(artifact)
    if passes and path and not any(o.model.format == "torch" for o in outputs):  # a file is the whole artifact
        write_json_atomic(build / BUILT, {"passes": passes, "artifact": path, "meta": _plain(artifact.meta),
                                          "outputs": [[list(o.notes), _plain(o.details)] for o in outputs]})
    return artifact, outputs


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """The entries of `values` that JSON keeps as they are."""
    import json

    kept = {}
    for key, value in values.items():
        try:
            if json.loads(json.dumps(value)) == value:
                kept[key] = value
        except (TypeError, ValueError):
            pass
    return kept


def _confirm(job: TrialJob, model, artifact, recipe: Recipe, heldout, data_name, say) -> TrialRecord:
    """The speed-up alone, in a fresh process: the check a chosen candidate passes before it is written as best."""
    from infertune.backends import load_session
    from infertune.bench import timing
    from infertune.bench.workload import build_workload

    batch = job.throughput_batch if job.objective == "throughput" else job.batch_size
    session = load_session(artifact, recipe.backend, **recipe.backend_options)
    base = Recipe.from_dict(job.baseline_recipe)
    baseline = load_session(model, base.backend, **base.backend_options)
    batches = _objective_batches(build_workload(artifact, heldout, (batch,), data_name=data_name), batch,
                                 job.objective)
    timing.warm_up(session, batches)
    p50_ms = float(np.median(timing.time_runs(session, batches, min_runs=5, min_seconds=0.2)) * 1e3)
    say("confirming the speed-up")
    return TrialRecord(id=job.id, recipe=job.recipe, backend=recipe.backend,
                       speedup=speedup(baseline, session, batches, rounds=job.rounds, p50_ms=p50_ms, say=say))


def _objective_batches(workload, batch: int, objective: str) -> list[dict[str, np.ndarray]]:
    """What the speed-up is measured on: for throughput on texts, batches of similar lengths (as users batch)."""
    if objective == "throughput" and workload.grouped.get(batch):
        return workload.grouped[batch]
    return workload.batches[batch]


def speedup(baseline, session, batches, *, rounds: int, p50_ms: float, say=print) -> Speedup:
    """The interleaved speed-up of `session` over `baseline`, with its spread; measured again, with twice the
    rounds, when its spread is implausible (p90/p10 over SPREAD_LIMIT) or the median of per-round ratios and
    the ratio of pooled medians disagree by more than AGREE_LIMIT. `stable` is false when the second
    measurement is no better: a verdict never rests on it."""
    from infertune.bench import timing

    runs = max(5, min(2000, int(BLOCK_S * 1000 / max(p50_ms, 1e-4))))  # blocks of about BLOCK_S: a hiccup of the
    # machine then moves a block's median little, where a block of 20 calls of 0.03 ms was all hiccup
    for attempt in (1, 2):
        comparison = timing.compare_ab(baseline, session, batches, rounds=rounds * attempt, runs_per_round=runs)
        found = Speedup(batch=len(next(iter(batches[0].values()))), value=comparison.speedup,
                        low=comparison.speedup_low, high=comparison.speedup_high, rounds=comparison.rounds,
                        pooled=comparison.a_p50_ms / comparison.b_p50_ms, attempts=attempt)
        if plausible(found):
            return dataclasses.replace(found, stable=True)
        say(f"timing unstable (p10-p90 {found.low:.2f}-{found.high:.2f}x, pooled {found.pooled:.2f}x): "
            f"measuring again")
    return dataclasses.replace(found, stable=False)


def plausible(speed: Speedup) -> bool:
    low, high, value, pooled = speed.low, speed.high, speed.value, speed.pooled_or_value
    return low > 0 and high / low <= SPREAD_LIMIT and max(value, pooled) / min(value, pooled) <= AGREE_LIMIT


def _compute(model, outputs, batch, p50_ms: float, precision: str | None = None) -> Compute | None:
    """Achieved G(FL)OP/s at the objective batch, as a fraction of this machine's measured GEMM peak in the dtype
    the candidate's matmuls run in (int8 against the int8 peak, bf16 against bf16, else fp32). FLOPs are counted on
    the last torch form of the model (a pruned or distilled one has fewer)."""
    from infertune.bench.flops import dtype_of, model_flops, peaks

    torch_forms = [o.model for o in outputs if o.model.format == "torch"]
    flops = model_flops(torch_forms[-1] if torch_forms else model, batch)
    if not flops:
        return None
    achieved = flops / (p50_ms / 1e3) / 1e9
    dtype = dtype_of(precision)
    peak = peaks()[dtype]
    return Compute(flops=flops, gflops=achieved, dtype=dtype, peak_gflops=peak, fraction_of_peak=achieved / peak)


def _train_seconds(outputs) -> float | None:
    """Seconds the recipe's passes spent training (fine-tuning, distillation, QAT); None when none trained."""
    found = [o.details["train_seconds"] for o in outputs if "train_seconds" in o.details]
    return float(sum(found)) if found else None


def _latency(stats) -> Latency:
    return Latency(batch=stats.batch, p50=stats.p50_ms, p90=stats.p90_ms, p99=stats.p99_ms)


def _artifact_path(artifact) -> str | None:
    path = artifact.ir_path or artifact.onnx_path
    return str(path) if path is not None else None

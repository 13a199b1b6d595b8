"""Every pass configuration on both reference models, measured side by side in one run.

One row per configuration: the backend it runs on, quality against the fp32 baseline on the held-out split,
size on disk, batch-1 p50 / p99, large-batch throughput (consecutive held-out samples, and for texts also
similar lengths batched together), and the speed-up against torch eager fp32 measured in the same run. ONNX and OpenVINO artifacts are measured in a fresh process each; torch artifacts changed in
memory (BN folding, torchao) are measured in this process, one after another.

    .venv/bin/python benchmarks/passes.py [--quick] [--only minilm|digits-cnn] [--rows TEXT ...] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

from infertune.bench import BenchJob, Timing
from infertune.bench.result import BenchResult
from infertune.bench.isolated import run_isolated
from infertune.bench.job import run_job
from infertune.bench.suite import fidelity, reference_outputs
from infertune.resolver import resolve
from infertune.passes.cluster import WeightSharing
from infertune.passes.distill import Distill
from infertune.passes.export import ExportOnnx
from infertune.passes.fuse import FoldBatchNorm, OrtFusion
from infertune.passes.lowrank import LowRank
from infertune.passes.prune import MagnitudePrune, StructuredPrune
from infertune.passes.prune_budget import PruneToBudget
from infertune.passes.sparse import SparseLinear
from infertune.passes.unpad import Unpad
from infertune.passes.mixed_precision import MixedPrecisionInt8
from infertune.passes.quantize.onnx_backend import Fp16Onnx, Int4WeightOnly, Int8Dynamic, Int8Static
from infertune.passes.quantize.openvino_backend import Int8Nncf
from infertune.passes.quantize.qat import Qat
from infertune.passes.quantize.torch_backend import Int8Torchao
from infertune.passes.registry import PassContext, apply

EXPORT, FUSE = ExportOnnx(), OrtFusion()
NNCF_FAST = Int8Nncf(preset="performance", float_attention=True)


def PRUNE_FFN(max_drop: float) -> PruneToBudget:  # noqa: N802  (reads as a row's pass)
    """MiniLM's FFN neurons pruned by activation in 5 % steps: which of heads / FFN, l1 / activation and 5 % /
    10 % steps kept MiniLM closest to fp32 when tried (a 10 % l1 step of heads and FFN alone dropped 0.049)."""
    return PruneToBudget(max_drop=max_drop, step=0.05, importance="activation", heads=False, max_sparsity=0.5,
                         fine_tune_epochs=1, lr=5e-5)

ORT_BASE, OV_BASE, TORCH_BASE = "onnxruntime fp32", "openvino fp32 hint", "torch eager fp32 (baseline)"
# (label, passes, backend, backend options, the same-backend fp32 row it is compared with)
ROWS = {
    "minilm": [
        (TORCH_BASE, [], "torch", {}, TORCH_BASE),
        (ORT_BASE, [EXPORT], "onnxruntime", {}, ORT_BASE),
        ("onnxruntime fp32, fused", [EXPORT, FUSE], "onnxruntime", {}, ORT_BASE),
        ("onnxruntime int8 dynamic per-tensor (Optimum avx512_vnni preset)",
         [EXPORT, Int8Dynamic(per_channel=False, reduce_range=False)],
         "onnxruntime", {"skip_layer_norm": True}, ORT_BASE),  # ONNX Runtime's own load-time fusions, as its users
        ("onnxruntime int8 dynamic per-channel, fused", [EXPORT, FUSE, Int8Dynamic()], "onnxruntime", {}, ORT_BASE),
        ("onnxruntime int8 dynamic per-channel, fused, padding removed", [EXPORT, FUSE, Unpad(), Int8Dynamic()],
         "onnxruntime", {}, ORT_BASE),
        ("onnxruntime int8 dynamic per-channel, fused, cut by length", [EXPORT, FUSE, Int8Dynamic()], "onnxruntime",
         {"by_length": True}, ORT_BASE),
        ("onnxruntime fp32, padding removed", [EXPORT, Unpad()], "onnxruntime", {}, ORT_BASE),
        ("onnxruntime int8 dynamic per-channel, fused, SkipLayerNorm fused at load (ONNX Runtime's default)",
         [EXPORT, FUSE, Int8Dynamic()], "onnxruntime", {"skip_layer_norm": True}, ORT_BASE),
        ("onnxruntime int8 mixed precision (validation drop <= 0.004), fused",
         [EXPORT, FUSE, MixedPrecisionInt8(max_drop=0.004)], "onnxruntime", {}, ORT_BASE),
        ("onnxruntime int8 static QDQ minmax per-channel", [EXPORT, Int8Static()], "onnxruntime", {}, ORT_BASE),
        ("onnxruntime int8 static QDQ minmax per-channel, float MatMul outputs",
         [EXPORT, Int8Static(float_outputs=True)], "onnxruntime", {}, ORT_BASE),
        ("openvino int8 static QDQ minmax per-channel, float MatMul outputs",
         [EXPORT, Int8Static(float_outputs=True)], "openvino", {}, OV_BASE),
        ("onnxruntime int8 static QDQ minmax per-channel, float MatMul outputs, fused",
         [EXPORT, FUSE, Int8Static(float_outputs=True)], "onnxruntime", {}, ORT_BASE),
        ("onnxruntime int4 weight-only (block 32), fused", [EXPORT, FUSE, Int4WeightOnly()], "onnxruntime", {},
         ORT_BASE),
        ("onnxruntime fp16, fused", [EXPORT, FUSE, Fp16Onnx()], "onnxruntime", {}, ORT_BASE),
        (OV_BASE, [EXPORT], "openvino", {}, OV_BASE),
        ("openvino bf16 hint", [EXPORT], "openvino", {"precision": "bf16"}, OV_BASE),
        ("openvino + NNCF int8 (transformer scheme)", [EXPORT, Int8Nncf()], "openvino", {}, OV_BASE),
        ("openvino + NNCF int8 (transformer scheme), bf16 for the other ops", [EXPORT, Int8Nncf()], "openvino",
         {"precision": "bf16"}, OV_BASE),
        ("openvino + NNCF int8 (transformer scheme), static shapes", [EXPORT, Int8Nncf()], "openvino",
         {"shapes": "static"}, OV_BASE),
        ("openvino + NNCF int8 (transformer scheme), batch split in 2", [EXPORT, Int8Nncf()], "openvino",
         {"split": 2}, OV_BASE),
        ("openvino + NNCF int8 (transformer scheme), batch split in 2, cut by length", [EXPORT, Int8Nncf()],
         "openvino", {"split": 2, "by_length": True}, OV_BASE),
        ("openvino + NNCF int8 (transformer scheme), padding removed", [EXPORT, Unpad(), Int8Nncf()], "openvino",
         {}, OV_BASE),
        ("openvino + NNCF int8 (transformer scheme), padding removed, static shapes", [EXPORT, Unpad(), Int8Nncf()],
         "openvino", {"shapes": "static"}, OV_BASE),
        ("openvino + NNCF int8 (transformer scheme), symmetric activations, float attention",
         [EXPORT, NNCF_FAST], "openvino", {}, OV_BASE),
        ("openvino + NNCF int8 (transformer scheme), symmetric activations, float attention, static shapes",
         [EXPORT, NNCF_FAST], "openvino", {"shapes": "static"}, OV_BASE),
        ("openvino + NNCF int8 (transformer scheme), symmetric activations, float attention, padding removed, "
         "static shapes", [EXPORT, Unpad(), NNCF_FAST], "openvino", {"shapes": "static"}, OV_BASE),
        ("openvino bf16 hint, static shapes", [EXPORT], "openvino", {"precision": "bf16", "shapes": "static"}, OV_BASE),
        ("torch-compile (freezing) fp32", [], "torch-compile", {}, TORCH_BASE),
        ("torchao int8 dyn-act/int8-weight + torch-compile (freezing)", [Int8Torchao()], "torch-compile", {},
         TORCH_BASE),
        ("torch eager bf16", [], "torch", {"precision": "bf16"}, TORCH_BASE),
        ("distilled 3-layer student, torch eager", [Distill(layers=3, epochs=12, lr=2e-4)], "torch", {}, TORCH_BASE),
        ("distilled 3-layer student + 50,000 corpus sentences, 2 epochs, torch eager",
         [Distill(layers=3, epochs=2, lr=2e-4, corpus=50_000)], "torch", {}, TORCH_BASE),
        ("distilled 3-layer student, onnxruntime fused int8 per-channel",
         [Distill(layers=3, epochs=12, lr=2e-4), EXPORT, FUSE, Int8Dynamic()], "onnxruntime", {}, ORT_BASE),
        ("structured prune 25% heads + FFN, distil 3 epochs, torch eager",
         [StructuredPrune(amount=0.25, fine_tune_epochs=3, lr=5e-5)], "torch", {}, TORCH_BASE),
        ("QAT int8 static QDQ (uint8 act, per-channel int8 weights), 400 steps, onnxruntime",
         [Qat(steps=400, lr=5e-6)], "onnxruntime", {}, ORT_BASE),
        ("QAT int8 static QDQ (uint8 act, per-channel int8 weights), 400 steps, onnxruntime, cut by length",
         [Qat(steps=400, lr=5e-6)], "onnxruntime", {"by_length": True}, ORT_BASE),  # static scales: rows as alone
        ("QAT int8 static QDQ (uint8 act, per-channel int8 weights), 400 steps, openvino",
         [Qat(steps=400, lr=5e-6)], "openvino", {}, OV_BASE),
        ("prune to the budget (validation drop <= 0.01), FFN neurons by activation, 5% steps, onnxruntime",
         [PRUNE_FFN(max_drop=0.01), EXPORT], "onnxruntime", {}, ORT_BASE),
        ("prune to the budget (validation drop <= 0.03), FFN neurons by activation, 5% steps, onnxruntime",
         [PRUNE_FFN(max_drop=0.03), EXPORT], "onnxruntime", {}, ORT_BASE),
        ("prune to the budget (validation drop <= 0.03), FFN neurons by activation, 5% steps, int8 static float "
         "MatMul outputs, onnxruntime", [PRUNE_FFN(max_drop=0.03), EXPORT, Int8Static(float_outputs=True)],
         "onnxruntime", {}, ORT_BASE),
        ("low-rank SVD 90% energy (kept where faster), torch eager", [LowRank(energy=0.9)], "torch", {}, TORCH_BASE),
        ("weight sharing 6-bit codebooks, torch eager", [WeightSharing(bits=6)], "torch", {}, TORCH_BASE),
        ("magnitude prune 80% + sparse CSR Linear where faster, torch eager",
         [MagnitudePrune(sparsity=0.8, storage="sparse"), SparseLinear()], "torch", {}, TORCH_BASE),
    ],
    "digits-cnn": [
        (TORCH_BASE, [], "torch", {}, TORCH_BASE),
        ("torch eager, BN folded", [FoldBatchNorm()], "torch", {}, TORCH_BASE),
        (ORT_BASE, [EXPORT], "onnxruntime", {}, ORT_BASE),
        ("onnxruntime int8 dynamic per-channel", [EXPORT, Int8Dynamic()], "onnxruntime", {}, ORT_BASE),
        ("onnxruntime int8 static QDQ minmax per-channel", [EXPORT, Int8Static()], "onnxruntime", {}, ORT_BASE),
        ("onnxruntime fp16", [EXPORT, Fp16Onnx()], "onnxruntime", {}, ORT_BASE),
        (OV_BASE, [EXPORT], "openvino", {}, OV_BASE),
        ("openvino + NNCF int8", [EXPORT, Int8Nncf()], "openvino", {}, OV_BASE),
        ("torch-compile (freezing) fp32", [], "torch-compile", {}, TORCH_BASE),
        ("structured prune 75% channels + fine-tune 15 epochs, torch eager",
         [StructuredPrune(amount=0.75, fine_tune_epochs=15)], "torch", {}, TORCH_BASE),
        ("structured prune 75% channels + fine-tune 15 epochs, onnxruntime",
         [StructuredPrune(amount=0.75, fine_tune_epochs=15), EXPORT], "onnxruntime", {}, ORT_BASE),
        ("structured prune 87.5% channels + fine-tune 15 epochs, onnxruntime",
         [StructuredPrune(amount=0.875, fine_tune_epochs=15), EXPORT], "onnxruntime", {}, ORT_BASE),
        ("distilled student at 25% width, 30 epochs, torch eager", [Distill(width=0.25, epochs=30)], "torch", {},
         TORCH_BASE),
        ("distilled student at 25% width, 30 epochs, onnxruntime", [Distill(width=0.25, epochs=30), EXPORT],
         "onnxruntime", {}, ORT_BASE),
        ("QAT int8 static QDQ (uint8 act, per-channel int8 weights), 400 steps, onnxruntime",
         [Qat(steps=400, lr=1e-4)], "onnxruntime", {}, ORT_BASE),
        ("prune to the budget (validation drop <= 0.005), onnxruntime",
         [PruneToBudget(max_drop=0.005, step=0.125, fine_tune_epochs=2, lr=1e-3), EXPORT], "onnxruntime", {},
         ORT_BASE),
        ("prune to the budget (validation drop <= 0.015), onnxruntime",
         [PruneToBudget(max_drop=0.015, step=0.125, fine_tune_epochs=2, lr=1e-3), EXPORT], "onnxruntime", {},
         ORT_BASE),
        ("low-rank SVD 90% energy (kept where faster), torch eager", [LowRank(energy=0.9)], "torch", {}, TORCH_BASE),
        ("weight sharing 4-bit codebooks + centroid fine-tune, torch eager",
         [WeightSharing(bits=4, fine_tune_epochs=2)], "torch", {}, TORCH_BASE),
        ("magnitude prune 80% + sparse CSR Linear where faster, torch eager",
         [MagnitudePrune(sparsity=0.8, storage="sparse"), SparseLinear()], "torch", {}, TORCH_BASE),
    ],
}
BATCHES = {"minilm": (1, 32), "digits-cnn": (1, 256)}


SENSITIVITY: list[dict] = []  # int8-mixed's per-layer tables, printed under the model's table


def build(model, passes, dataset, workdir: Path, cache: dict):
    """Apply passes; a prefix already built for an earlier row (same configs, deterministic) is reused. Returns
    the artifact, the passes' notes and the seconds they spent training (None when none trained)."""
    notes: list[str] = []
    trained: list[float] = []
    for index, config in enumerate(passes):
        key = tuple(passes[:index + 1])
        if key not in cache:
            out = apply(model, config, PassContext(workdir=workdir / f"{len(cache)}-{type(config).__name__}",
                                                   dataset=dataset,
                                                   progress=lambda s: print(f"      {s}", file=sys.stderr)))
            cache[key] = (out.model, out.notes, out.details)
        model, more, details = cache[key]
        notes = notes + more
        if "train_seconds" in details:
            trained.append(details["train_seconds"])
        if details.get("sensitivity"):
            SENSITIVITY.append(details)
    return model, notes, (sum(trained) if trained else None)


def measure(name, artifact, backend, options, sizes, timing, outputs_path, split, data_name):
    path = artifact.ir_path or artifact.onnx_path
    job = BenchJob(model={"model": name}, backend=backend, options=options, onnx_path=str(path) if path else None,
                   data={"data": data_name},
                   batch_sizes=sizes, timing=timing, outputs_path=str(outputs_path) if outputs_path else None)
    if path is not None:
        return run_isolated(job)
    return run_job(job, model=artifact, split=split, data_name=data_name)


def _ratio(base: float | None, value: float) -> str:
    return f"{base / value:.2f}x" if base else "-"


def quality(model_name, fid, baseline_top1):
    if model_name == "minilm":
        return f"cos {fid['cosine_mean']:.4f} (min {fid['cosine_min']:.4f}), top-10 nn {fid['neighbour_agreement_10']:.3f}"
    return f"top-1 {fid['top1_candidate']:.4f} ({(fid['top1_candidate'] - baseline_top1) * 100:+.1f} pt)"


def _matches(label: str, pattern: str) -> bool:
    """Whether a row's label holds `pattern` (case aside); a pattern ending in '$' must end the label."""
    label, pattern = label.lower(), pattern.lower()
    return label.endswith(pattern[:-1]) if pattern.endswith("$") else pattern in label


def selected(name: str, patterns: list[str] | None) -> list[tuple]:
    """The model's rows whose label holds one of `patterns` (all when none), with the fp32 rows they are compared
    with, in the table's order."""
    rows = ROWS[name]
    if not patterns:
        return rows
    chosen = [row for row in rows if any(_matches(row[0], p) for p in patterns)]
    if not chosen:
        raise SystemExit(f"--rows {patterns} match no {name} row: rows are " + "; ".join(r[0] for r in rows))
    keep = {row[0] for row in chosen} | {row[4] for row in chosen} | {TORCH_BASE}
    return [row for row in rows if row[0] in keep]


def run_model(name: str, timing: Timing, workdir: Path, patterns: list[str] | None = None, repeat: int = 1) -> str:
    """The model's table. Every row is built first, then measured `repeat` times in interleaved rounds (each
    round measures every row once, in table order), so a slow spell of a shared machine falls on every row; with
    more than one round the table shows the medians over the rounds and the notes each round's figures."""
    sizes = BATCHES[name]
    model, dataset = resolve(name)
    split, data_name = dataset.split("heldout"), dataset.name
    reference = reference_outputs(model, split, 256)
    baseline_top1 = None
    if split.labels is not None:
        first = next(iter(reference.values()))
        baseline_top1 = float(np.mean(first.argmax(axis=1) == split.labels[:len(first)]))
    small, large = sizes
    rows, p50s, built, made = [], {}, {}, []
    for i, (label, passes, backend, options, versus) in enumerate(selected(name, patterns)):
        print(f"   [{name}] {label}", file=sys.stderr, flush=True)
        try:
            artifact, notes, trained = build(model, passes, dataset, workdir / name, built)
        except Exception as e:  # a pass that fails is a row that says so, never the end of the run
            made.append((label, backend, options, versus, None, f"pass failed: {type(e).__name__}: {e}", None, None))
            continue
        outputs = workdir / name / f"outputs-{i}.npz"
        made.append((label, backend, options, versus, artifact, "; ".join(notes), trained, outputs))
    rounds: dict[str, list] = {label: [] for label, *_ in made}
    for r in range(repeat):
        for label, backend, options, versus, artifact, notes, trained, outputs in made:
            if artifact is None or (rounds[label] and not rounds[label][0].ok):
                continue
            if repeat > 1:
                print(f"   [{name}] round {r + 1}/{repeat}: {label}", file=sys.stderr, flush=True)
            try:
                result = measure(name, artifact, backend, options, sizes, timing, outputs if r == 0 else None,
                                 split, data_name)
            except Exception as e:
                result = BenchResult(model=name, backend=backend, settings={}, error=f"measurement failed: {type(e).__name__}: {e}")
            rounds[label].append(result)
            if repeat > 1:
                together = result.grouped_at(large) if result.ok else None
                print(f"      {result.error}" if not result.ok else f"      b{small} p50 {result.at(small).p50_ms:.3f} ms, "
                      f"b{large} {result.at(large).items_per_s:.0f} items/s"
                      + (f", {together.items_per_s:.0f} similar lengths together" if together else ""),
                      file=sys.stderr, flush=True)
    for label, backend, options, versus, artifact, notes, trained, outputs in made:
        if artifact is None:
            rows.append((label, backend, None, notes, versus, None))
            continue
        result = rounds[label][0]
        if result.ok and outputs.is_file():
            with np.load(outputs) as saved:
                result.fidelity = fidelity(reference, dict(saved), split.labels)
        if result.ok and len(rounds[label]) > 1 and all(x.ok for x in rounds[label]):
            p50_each = [x.at(small).p50_ms for x in rounds[label]]
            rate_each = [x.at(large).items_per_s for x in rounds[label]]
            medians = {small: {"p50_ms": float(np.median(p50_each))}, large: {"items_per_s": float(np.median(rate_each))}}
            result.latency = [dataclasses.replace(s, **medians.get(s.batch, {})) for s in result.latency]
            grouped_each = [x.grouped_at(large).items_per_s for x in rounds[label] if x.grouped_at(large)]
            if result.grouped_at(large) and len(grouped_each) == len(rate_each):
                result.grouped = [dataclasses.replace(s, items_per_s=float(np.median(grouped_each)))
                                  if s.batch == large else s for s in result.grouped]
            notes = "; ".join(filter(None, [notes, f"medians of {len(p50_each)} rounds: b{small} p50 ms "
                                                   + ", ".join(f"{v:.3f}" for v in p50_each) + f"; b{large} items/s "
                                                   + ", ".join(f"{v:.0f}" for v in rate_each)
                                                   + ("; similar lengths together " + ", ".join(
                                                       f"{v:.0f}" for v in grouped_each) if grouped_each else "")]))
        if result.ok:
            p50s[label] = result.at(small).p50_ms
        rows.append((label, backend, result, notes, versus, trained))
    lines = [f"### {name}", "", f"| configuration | backend | ran as | quality vs fp32 | size MB | b{small} p50 ms | "
             f"b{small} p99 ms | b{large} items/s | b{large} items/s, similar lengths together | "
             f"b{small} speed-up vs torch eager fp32 | b{small} speed-up vs same-backend fp32 | training s |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base_p50 = p50s.get(TORCH_BASE)
    for label, backend, result, notes, versus, trained in rows:
        if result is not None and result.ok and not result.fidelity:
            result.error = "no outputs to compare with the reference"
        if result is None or not result.ok:
            reason = notes if result is None else result.error
            reason = str(reason).replace("|", "\\|")  # an error naming |diff| must not split the table's cells
            lines.append(f"| {label} | {backend} | failed: {reason} | | | | | | | | | |")
            continue
        a, b, together = result.at(small), result.at(large), result.grouped_at(large)
        lines.append(f"| {label} | {backend} | {result.precision} | {quality(name, result.fidelity, baseline_top1)} | "
                     f"{result.artifact_bytes / 1e6:.2f} | {a.p50_ms:.3f} | {a.p99_ms:.3f} | {b.items_per_s:.0f} | "
                     f"{f'{together.items_per_s:.0f}' if together else '-'} | "
                     f"{_ratio(base_p50, a.p50_ms)} | {_ratio(p50s.get(versus), a.p50_ms)} | "
                     f"{'-' if trained is None else f'{trained:.0f}'} |")
        print(f"      -> {lines[-1]}", flush=True)
    notes = [f"- {label}: {n}" for label, _, r, n, _, _ in rows if n]
    tables = []
    for details in SENSITIVITY[:1]:
        tables += ["", "int8-mixed layer sensitivity on the validation split (drop when only that layer is int8; "
                       "the first rows were kept in float):", "", "| layer | drop alone | kept float |", "|---|---:|---|"]
        tables += [f"| {row['layer']} | {row['drop_alone']:.5f} | {'yes' if row['layer'] in details['kept_float'] else ''} |"
                   for row in details["sensitivity"]]
    SENSITIVITY.clear()
    return "\n".join(lines + ["", "Pass notes:", *notes, *tables]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short timing (a smoke run, not for quoting)")
    parser.add_argument("--only", choices=sorted(ROWS), help="one model only")
    parser.add_argument("--rows", action="append", metavar="TEXT",
                        help="only the rows whose label holds TEXT, or ends with it when TEXT ends in '$' (and the "
                             "fp32 rows they are compared with)")
    parser.add_argument("--title", help="the section's title in --out (default: Passes, with the model and rows "
                                        "when --only or --rows narrows the run, so the full table stays)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="measure every row N times in interleaved rounds; the table shows the medians")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    timing = Timing(min_runs=5, min_seconds=0.2) if args.quick else Timing(min_runs=100, min_seconds=3.0)
    title = args.title or ("Passes" + (f": {args.only}" if args.only else "")
                           + (f", rows matching {', '.join(repr(r) for r in args.rows)}" if args.rows else ""))
    for name in [args.only] if args.only else ROWS:
        selected(name, args.rows)  # a pattern that matches nothing stops here, before any work

    sections = []
    with tempfile.TemporaryDirectory(prefix="infertune-passes-") as tmp:
        for name in ([args.only] if args.only else ROWS):
            sections.append(run_model(name, timing, Path(tmp), args.rows, max(1, args.repeat)))
            print(sections[-1], flush=True)
    from benchmarks_common import header

    body = header(title, "benchmarks/passes.py", args.quick,
                  "Passes calibrate on the calibration split and train (fine-tuning, distillation) on the train "
                  "split; quality is measured on the first 256 held-out samples against torch eager fp32; latency "
                  "on the held-out split (natural-length sentences for minilm). ONNX/OpenVINO rows ran in a fresh "
                  "process each, torch rows in the script's process. All rows come from one run"
                  + (f"; every row was measured in {args.repeat} interleaved rounds and the table shows the medians "
                     f"(each round's figures are in the notes)." if args.repeat > 1 else ".")) + sections
    from benchmarks_common import replace_section

    replace_section(args.out, "\n".join(body))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

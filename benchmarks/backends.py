"""The four CPU backends side by side on both reference models, measured in one run.

Each configuration runs in a fresh process (its own threads and memory), on real held-out data:
natural-length docstring sentences for minilm, handwritten digits for digits-cnn. Every figure is printed
as measured, with the hardware, and written to docs/benchmarks.md (section "Backends").

    .venv/bin/python benchmarks/backends.py [--quick] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infertune.bench import Timing, bench_backends
from infertune.resolver import resolve
from infertune.bench.hardware import fingerprint
from infertune.report.terminal import bench_table

WORKLOADS = {
    "minilm": (1, 32),
    "digits-cnn": (1, 256),
}
CONFIGS = [
    ("torch", {}),
    ("torch", {"precision": "bf16"}),
    ("torch-compile", {"freezing": False}),
    ("torch-compile", {}),
    ("onnxruntime", {}),
    ("onnxruntime", {"exporter": "dynamo"}),
    ("openvino", {}),
    ("openvino", {"precision": "bf16"}),
]


def _label(result) -> str:
    settings = {k: v for k, v in result.settings.items() if k in ("freezing", "exporter") }
    extra = [f"{k}={v}" for k, v in settings.items()
             if (k, v) not in (("freezing", True), ("exporter", "torchscript"))]
    return " ".join([result.backend, *extra])


def _mb(value) -> str:
    return f"{value / 1e6:.0f}" if value else "-"


def markdown(model: str, sizes, results) -> str:
    small, large = sizes
    lines = [f"### {model}", "",
             f"| backend | ran as | b{small} p50 ms | b{small} p99 ms | b{large} items/s | b{large} p50 ms | "
             f"size MB | peak RSS MB | speed-up b{small} vs torch fp32 | fidelity vs torch fp32 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    base = next((r.at(small).p50_ms for r in results if r.ok and r.backend == "torch" and r.precision == "fp32"), None)
    for r in results:
        if not r.ok:
            lines.append(f"| {_label(r)} | failed: {r.error} |  |  |  |  |  |  |  |  |")
            continue
        a, b = r.at(small), r.at(large)
        fid = r.fidelity or {}
        quality = f"cos {fid.get('cosine_mean', float('nan')):.6f} (min {fid.get('cosine_min', float('nan')):.6f})"
        if "neighbour_agreement_10" in fid:
            quality += f", top-10 nn {fid['neighbour_agreement_10']:.3f}"
        if "top1_candidate" in fid:
            quality += f", top-1 {fid['top1_candidate']:.4f}"
        speedup = f"{base / a.p50_ms:.2f}x" if base else "-"
        lines.append(f"| {_label(r)} | {r.precision} | {a.p50_ms:.2f} | {a.p99_ms:.2f} | {b.items_per_s:.0f} | "
                     f"{b.p50_ms:.2f} | {r.artifact_bytes / 1e6:.1f} | {_mb(r.peak_rss_bytes)} | {speedup} | "
                     f"{quality} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short timing (a smoke run, not for quoting)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    timing = Timing(min_runs=5, min_seconds=0.2) if args.quick else Timing(min_runs=100, min_seconds=4.0)
    sections = []
    for model, sizes in WORKLOADS.items():
        print(f"== {model}: batch sizes {sizes}", flush=True)
        loaded, data = resolve(model)
        results = bench_backends(loaded, CONFIGS, data=data, batch_sizes=sizes, timing=timing,
                                 progress=lambda label, stage: print(f"   {label}: {stage}", file=sys.stderr))
        bench_table(results, sizes, fingerprint())
        sections.append(markdown(model, sizes, results))
    from benchmarks_common import header

    body = header("Backends", "benchmarks/backends.py", args.quick,
                  "Each row ran in its own process, one after another in one run; latency is the median (p50) and "
                  "99th percentile of timed calls after a warm-up that ran every distinct input shape once. Inputs: "
                  "minilm on the 512 held-out docstring sentences at natural length (padded per batch); digits-cnn "
                  "on the 500 held-out digits. Fidelity compares outputs on the first 256 held-out samples with "
                  "torch eager fp32. `ran as` is the precision the runtime reported back.") + sections
    from benchmarks_common import replace_section

    replace_section(args.out, "\n".join(body))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

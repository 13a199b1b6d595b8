"""An ensemble of three digits models, measured side by side in one run: the trained CNN, a structurally pruned
CNN (half its channels, fine-tuned) and a distilled student (a quarter of the channels), combined by the mean of
probabilities and by vote. Top-1 on the held-out split for each member and each ensemble; then the fused ONNX graph
(one engine call) against calling the three members one by one (three calls, combined in numpy), both on ONNX
Runtime: batch-1 p50 and batch-256 throughput, timed interleaved in this process.

    .venv/bin/python benchmarks/ensemble.py [--quick] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks_common import header, replace_section


def members(workdir: Path):
    from infertune.api import apply_passes  # resolves data="digits" into its Dataset
    from infertune.resolver import load_model
    from infertune.passes.distill import Distill
    from infertune.passes.prune import StructuredPrune

    cnn = load_model("digits-cnn")
    pruned, _ = apply_passes(cnn, [StructuredPrune(amount=0.5, fine_tune_epochs=10)], data="digits",
                             workdir=workdir / "pruned")
    student, _ = apply_passes(cnn, [Distill(width=0.25, epochs=30)], data="digits", workdir=workdir / "student")
    return {"digits-cnn": cnn, "pruned CNN (half the channels)": pruned, "distilled student (a quarter)": student}


def timed(run, batches, seconds: float) -> tuple[float, float]:
    """(p50 ms, items/s) over `batches`, cycling for `seconds`."""
    times, items = [], 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for batch in batches:
            t = time.perf_counter()
            run(batch)
            times.append(time.perf_counter() - t)
            items += len(next(iter(batch.values())))
    return statistics.median(times) * 1000, items / sum(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "docs" / "benchmarks.md")
    args = parser.parse_args()
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731

    import infertune
    from infertune import ensemble
    from infertune.data import load_dataset

    workdir = Path(tempfile.mkdtemp(prefix="infertune-ensemble-"))
    say("building the pruned CNN and the distilled student")
    models = members(workdir)
    heldout = load_dataset("digits").split("heldout")
    x, labels = heldout.inputs["pixels"], heldout.labels
    lines = header("Ensemble", "benchmarks/ensemble.py", args.quick,
                   f"Three digits models on the {len(labels)} held-out digits; ONNX Runtime fp32, default threads.")
    lines += ["| model | top-1 |", "|---|---:|"]
    engines = {}
    for name, model in models.items():
        engines[name] = infertune.load(model, backend="onnxruntime" if model.format == "onnx" else "torch")
        logits = engines[name].run({"pixels": x})[model.signature.output_names[0]]
        lines.append(f"| {name} | {(logits.argmax(axis=1) == labels).mean():.4f} |")
    fused = {}
    for combine in ("mean", "vote"):
        spec = ensemble.EnsembleSpec(members=tuple(models), combine=combine, name=f"ensemble-{combine}")
        fused[combine] = ensemble.build(spec, list(models.values()), workdir=workdir)
        scores = infertune.load(fused[combine], backend="onnxruntime").run({"pixels": x})[ensemble.OUTPUTS[combine]]
        label = "mean of probabilities" if combine == "mean" else "vote (ties to the lowest class)"
        lines.append(f"| ensemble, {label} | {(scores.argmax(axis=1) == labels).mean():.4f} |")
    say("timing the fused graph against the members one by one")
    spec = ensemble.EnsembleSpec(members=tuple(models), combine="mean")
    one_by_one = ensemble.composite(spec, list(models.values()), ["onnxruntime"] * 3, [{}] * 3)
    graph = infertune.load(fused["mean"], backend="onnxruntime")
    seconds = 0.5 if args.quick else 3.0
    singles = [{"pixels": x[i:i + 1]} for i in range(min(256, len(x)))]
    bigs = [{"pixels": x[i:i + 256]} for i in range(0, len(x) - 255, 256)]
    figures = {"fused": ([], []), "one by one": ([], [])}
    for _ in range(3):  # alternated, so drift of the machine falls on both
        for label, run in (("fused", graph.run), ("one by one", one_by_one.run)):
            figures[label][0].append(timed(run, singles, seconds)[0])
            figures[label][1].append(timed(run, bigs, seconds)[1])
    lines += ["", "| ensemble (mean), ONNX Runtime | b1 p50 ms | b256 items/s |", "|---|---:|---:|"]
    for label, (p50s, rates) in figures.items():
        text = "one fused graph, one call" if label == "fused" else "three members, three calls, combined in numpy"
        lines.append(f"| {text} | {statistics.median(p50s):.4f} | {statistics.median(rates):.0f} |")
    b1 = statistics.median(figures["one by one"][0]) / statistics.median(figures["fused"][0])
    b256 = statistics.median(figures["fused"][1]) / statistics.median(figures["one by one"][1])
    lines += ["", f"The fused graph against three calls: b1 p50 {b1:.2f}x faster, b256 throughput {b256:.2f}x (medians "
                  f"of 3 alternated rounds of {seconds:g} s).", ""]
    print("\n".join(lines))
    replace_section(args.out, "\n".join(lines))


if __name__ == "__main__":
    main()

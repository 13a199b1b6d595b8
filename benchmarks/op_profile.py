"""Where the time of a batch goes, per operator type, for rows of benchmarks/passes.py, side by side in one run.

Two rows that run the same int8 kernels can still differ in speed; this answers which operators make the
difference. Each chosen row is built as passes.py builds it, then every row runs the same fixed batch in
interleaved rounds in this one process, with the runtime's own per-node profiler on (OpenVINO's PERF_COUNT,
ONNX Runtime's session profiling). The table shows, per operator type and the precision it ran in, milliseconds
per batch (each round's mean over its runs, then the median over the rounds); below it, each row's wall-clock median with the profiler on, so what the
profiler does not see (scheduling between nodes) shows as the gap between the two.

    .venv/bin/python benchmarks/op_profile.py --only minilm --rows NNCF --rows "400 steps, openvino" [--batch 32]
        [--rounds 5] [--runs 20] [--out docs/benchmarks.md]

Torch rows are skipped: their operators are not the runtime's. ONNX Runtime's profiler costs time per node: on a
graph of many small nodes at batch 1 it slows the run itself (MiniLM's QAT graph at batch 1: 4.09 ms per run
profiled, 1.38 ms in passes.py), so read its figures there as shares of the time, not as the speed.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from passes import BATCHES, build, selected
from infertune.resolver import resolve


class Profiled:
    """One artifact on its runtime with the per-node profiler on: `run(batch)` -> wall seconds; `per_run()` ->
    for every run so far, in order, {(operator, precision or provider): seconds}."""

    def __init__(self, artifact, backend: str, options: dict, workdir: Path):
        self.backend = backend
        path = artifact.ir_path or artifact.onnx_path
        if backend == "openvino":
            import openvino as ov

            from infertune.backends.openvino import HINTS, port_name

            config = {"INFERENCE_PRECISION_HINT": HINTS[options.get("precision", "fp32")],
                      "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True}
            core = ov.Core()
            compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
            self._request = compiled.create_infer_request()
            self._inputs = [port_name(p, artifact.signature.input_names) for p in compiled.inputs]
            self._runs: list[dict] = []
        elif backend == "onnxruntime":
            import onnxruntime as ort

            from infertune.backends.onnxruntime import disabled_optimizers, session_options
            from infertune.backends.settings import OnnxRuntimeSettings

            settings = OnnxRuntimeSettings(**options)
            sess_options = session_options(settings)
            sess_options.enable_profiling = True
            sess_options.profile_file_prefix = str(workdir / f"ort-profile-{id(self)}")
            self._session = ort.InferenceSession(str(path), sess_options=sess_options,
                                                 providers=["CPUExecutionProvider"],
                                                 disabled_optimizers=disabled_optimizers(settings))
            self._inputs = [i.name for i in self._session.get_inputs()]
        else:
            raise ValueError(f"no operator profile for backend '{backend}'")

    def run(self, batch: dict[str, np.ndarray]) -> float:
        feed = {n: batch[n] for n in self._inputs}
        start = time.perf_counter()
        if self.backend == "onnxruntime":
            self._session.run(None, feed)
            return time.perf_counter() - start
        self._request.infer(feed)
        seconds = time.perf_counter() - start
        times: collections.Counter = collections.Counter()
        for node in self._request.get_profiling_info():
            if node.status == node.Status.EXECUTED:
                times[(node.node_type, node.exec_type)] += node.real_time.total_seconds()
        self._runs.append(dict(times))
        return seconds

    def per_run(self) -> list[dict]:
        if self.backend == "openvino":
            return self._runs
        # ONNX Runtime writes its profile when it ends: node events are given to the run whose span holds them
        events = json.loads(Path(self._session.end_profiling()).read_text())
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
        runs: list[collections.Counter] = [collections.Counter() for _ in spans]
        starts = [s for s, _ in spans]
        for event in events:
            if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
                continue
            index = int(np.searchsorted(starts, event["ts"], side="right")) - 1
            if index >= 0 and event["ts"] <= spans[index][1]:
                args = event.get("args", {})
                provider = args.get("provider", "").replace("ExecutionProvider", "")
                runs[index][(args.get("op_name", "?"), provider)] += event["dur"] / 1e6
        return [dict(r) for r in runs]


WARM_RUNS = 3


def mean_times(runs: list[dict]) -> dict:
    keys = {k for run in runs for k in run}
    return {k: sum(run.get(k, 0.0) for run in runs) / len(runs) for k in keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", required=True, choices=sorted(BATCHES))
    parser.add_argument("--rows", action="append", required=True, metavar="TEXT",
                        help="the passes.py rows whose label holds TEXT (ONNX Runtime and OpenVINO rows)")
    parser.add_argument("--batch", type=int, help="batch size (default: the model's large batch in passes.py)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--runs", type=int, default=20, help="profiled runs of the batch per row and round")
    parser.add_argument("--title", help="the section's title in --out")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    if args.rounds < 1 or args.runs < 1:
        raise SystemExit(f"--rounds {args.rounds} and --runs {args.runs} must be at least 1")
    name, batch_size = args.only, args.batch or BATCHES[args.only][1]
    rows = [row for row in selected(name, args.rows)
            if any(p.lower() in row[0].lower() for p in args.rows) and row[2] in ("openvino", "onnxruntime")]
    if not rows:
        raise SystemExit(f"--rows {args.rows} match no ONNX Runtime or OpenVINO row of {name}")
    model, dataset = resolve(name)
    split = dataset.split("heldout")
    batch = model.inputs_for(split, np.arange(min(batch_size, len(split))))
    shape = ", ".join(f"{k} {tuple(v.shape)}" for k, v in batch.items())
    with tempfile.TemporaryDirectory(prefix="infertune-op-profile-") as tmp:
        runners = {}
        built: dict = {}
        for label, passes, backend, options, _ in rows:
            print(f"   building {label}", file=sys.stderr, flush=True)
            artifact, _, _ = build(model, passes, dataset, Path(tmp) / name, built)
            runners[label] = Profiled(artifact, backend, options, Path(tmp))
            for _ in range(WARM_RUNS):
                runners[label].run(batch)
        walls: dict[str, list[float]] = {label: [] for label in runners}
        for r in range(args.rounds):
            for label, runner in runners.items():
                walls[label].append(float(np.median([runner.run(batch) for _ in range(args.runs)])))
                print(f"   round {r + 1}/{args.rounds} {label}: {walls[label][-1] * 1e3:.2f} ms", file=sys.stderr,
                      flush=True)
        ops: dict[str, list[dict]] = {}
        for label, runner in runners.items():  # each round's mean per run, warm-up runs left out
            runs = runner.per_run()[WARM_RUNS:]
            ops[label] = [mean_times(runs[i:i + args.runs]) for i in range(0, len(runs), args.runs)]
    section = table(rows, walls, ops) + roof(model, batch)
    print(section)
    from benchmarks_common import header, replace_section

    title = args.title or f"Operator profile: {name}, batch {batch_size}, rows matching " + ", ".join(
        repr(r) for r in args.rows)
    body = header(title, "benchmarks/op_profile.py", False,
                  f"Each row was built as benchmarks/passes.py builds it, then all rows ran one fixed held-out batch "
                  f"({shape}) in this one process, {args.rounds} interleaved rounds of {args.runs} runs, with the "
                  f"runtime's per-node profiler on. Milliseconds per batch are medians over the rounds; an operator "
                  f"type is every node of that type and precision, summed.")
    replace_section(args.out, "\n".join(body + [section]))
    print(f"wrote {args.out}")
    return 0


def table(rows, walls, ops) -> str:
    labels = list(walls)
    keys: set = set()
    for per_round in ops.values():
        for times in per_round:
            keys |= set(times)
    median = {label: {k: float(np.median([t.get(k, 0.0) for t in ops[label]])) for k in keys} for label in labels}
    order = sorted(keys, key=lambda k: -max(median[label][k] for label in labels))
    shown = [k for k in order if max(median[label][k] for label in labels) >= 0.05e-3]
    short = {label: f"row {i + 1}" for i, label in enumerate(labels)}
    lines = ["Rows: " + "; ".join(f"{short[label]} = {label} ({backend})" for label, _, backend, _, _ in rows), "",
             "| operator | precision / kernel | " + " | ".join(f"{short[label]} ms" for label in labels) + " |",
             "|---|---|" + "---:|" * len(labels)]
    for op, kind in shown:
        lines.append(f"| {op} | {kind} | " + " | ".join(
            f"{median[label][(op, kind)] * 1e3:.3f}" if median[label][(op, kind)] else "-" for label in labels) + " |")
    rest = [k for k in order if k not in shown]
    if rest:
        lines.append(f"| {len(rest)} other types, each under 0.05 ms | | " + " | ".join(
            f"{sum(median[label][k] for k in rest) * 1e3:.3f}" for label in labels) + " |")
    lines.append("| **sum of the profiled operators** | | " + " | ".join(
        f"**{sum(median[label].values()) * 1e3:.3f}**" for label in labels) + " |")
    lines.append("| **wall clock per batch (profiler on)** | | " + " | ".join(
        f"**{np.median(walls[label]) * 1e3:.3f}**" for label in labels) + " |")
    lines += ["", "Wall clock per batch in each round, ms: " + "; ".join(
        f"{short[label]} " + ", ".join(f"{w * 1e3:.2f}" for w in walls[label]) for label in labels) + "."]
    return "\n".join(lines) + "\n"


def roof(model, batch) -> str:
    """The batch's matmul work and the least time it takes at this machine's measured GEMM peaks: the floor under
    every row, whatever runtime or scheme."""
    from infertune.bench.flops import model_flops, peaks

    flops = model_flops(model, batch)
    if not flops:
        return ""
    rates = peaks()
    floors = "; ".join(f"{dtype} {rate:.0f} G(FL)OP/s, at least {flops / rate / 1e6:.3g} ms" for dtype, rate in
                       sorted(rates.items(), key=lambda item: -item[1]))
    return (f"\nWork per batch: {flops / 1e9:.2f} G(FL)OP in matmuls (the torch model on this batch, torch's FLOP "
            f"counter). This machine's GEMM peaks (infertune.bench.flops, cached per hardware) and the least time "
            f"that work takes at each: {floors}.\n")


if __name__ == "__main__":
    sys.exit(main())

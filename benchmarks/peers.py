"""infertune's chosen MiniLM artifact against what users of the peer tools would run, side by side, in one run.

Rows: torch eager fp32; ONNX Runtime dynamic int8 configured as Optimum's avx512_vnni preset does it (per-tensor
QInt8 weights, unfused graph, ONNX Runtime's own load-time fusions); OpenVINO + NNCF int8 (transformer scheme);
OpenVINO with the bf16 inference precision hint; torchao int8 dynamic activations + int8 weights under
torch.compile with freezing; and the recipe `infertune optimize` chose, read from a run directory (default
runs/demo, written by `make demo`, `--objective latency`), and with `--run-throughput DIR` the recipe of a run made
with `--objective throughput`. Batch 32 is timed both ways: consecutive held-out sentences, and sentences of
similar length batched together (as sentence-transformers' `encode` sorts them). Each ONNX/OpenVINO row runs in a
fresh process; quality is against torch eager fp32 on the first 256 held-out sentences.

    .venv/bin/python benchmarks/peers.py [--run runs/demo] [--run-throughput DIR] [--repeat N] [--quick]
        [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from infertune.bench import Timing
from infertune.bench.suite import fidelity, reference_outputs
from infertune.resolver import resolve
from infertune.passes.export import ExportOnnx
from infertune.passes.quantize.onnx_backend import Int8Dynamic
from infertune.passes.quantize.openvino_backend import Int8Nncf
from infertune.passes.quantize.torch_backend import Int8Torchao
from infertune.search.recipe import Recipe
from passes import build, measure

BAR = (0.99, 0.90)  # PRODUCT.md quality bar for minilm: mean cosine, top-10 neighbour agreement


def chosen_recipe(run: Path) -> Recipe:
    manifest = run / "model" / "manifest.json"
    if not manifest.is_file():
        raise SystemExit(f"no run directory at '{run}': run `make demo` first (or `infertune optimize minilm "
                         f"--out DIR`), or pass the folder")
    return Recipe.from_dict(json.loads(manifest.read_text())["recipe"])


def peer_rows(run: Path, run_throughput: Path | None):
    rows = [
        ("torch eager fp32", [], "torch", {}),
        # the peers as their users get them: 8-bit weights (Optimum's preset), NNCF's own overflow fix (first layer
        # only), where infertune's passes take 7-bit weights by default on a CPU whose 8-bit products saturate
        ("ONNX Runtime dynamic int8, Optimum avx512_vnni preset (per-tensor QInt8)",
         [ExportOnnx(), Int8Dynamic(per_channel=False, reduce_range=False)], "onnxruntime",
         {"skip_layer_norm": True}),  # ORT's defaults
        ("OpenVINO + NNCF int8 (transformer scheme)", [ExportOnnx(), Int8Nncf(overflow_fix="first_layer_only")],
         "openvino", {}),
        ("OpenVINO bf16 inference precision hint", [ExportOnnx()], "openvino", {"precision": "bf16"}),
        ("torchao int8 dyn-act/int8-weight + torch.compile (freezing)", [Int8Torchao()], "torch-compile", {}),
    ]
    for objective, folder in (("latency", run), ("throughput", run_throughput)):
        if folder is not None:
            chosen = chosen_recipe(folder)
            rows.append((f"infertune optimize --max-drop 0.01 --objective {objective} chose: {chosen.describe()}",
                         list(chosen.passes), chosen.backend, chosen.backend_options))
    return rows


def verdicts(measured: list[tuple]) -> list[str]:
    """The issue's targets, from this run's rows: infertune's b1 p50 against the fastest peer that meets the bar
    (goal 2x), its b32 throughput against the best such peer, both ways of batching (goal 1.5x). Each row holds its
    figures per round; the ratio is the median of the per-round ratios, each round's listed when there are several
    (a slow spell of the machine falls on every row of its round)."""
    peers = [m for m in measured if not m[1] and m[2] and m[0] != "torch eager fp32"]
    ours = [m for m in measured if m[1]]
    if not peers or not ours:
        return ["No peer row met the bar, or no infertune row ran: no ratio to give."]

    def ratio(per_round: list[float]) -> str:
        value = f"{float(np.median(per_round)):.2f}x"
        return value + (f" (rounds: {', '.join(f'{r:.2f}' for r in per_round)})" if len(per_round) > 1 else "")

    rounds = min(len(m[3]) for m in peers + ours)
    fastest = min(peers, key=lambda m: float(np.median(m[3])))
    lines = []
    for label, _, meets, p50, b32, grouped in ours:
        bar = "meets the bar" if meets else "does NOT meet the bar"
        b1 = [min(m[3][r] for m in peers) / p50[r] for r in range(rounds)]
        rate = [b32[r] / max(m[4][r] for m in peers) for r in range(rounds)]
        line = (f"- {label} ({bar}): b1 p50 {ratio(b1)} the fastest peer at the bar ({fastest[0]}, "
                f"{float(np.median(fastest[3])):.3f} ms; goal 2x); b32 {ratio(rate)} the best peer "
                f"consecutively")
        if grouped and all(m[5] for m in peers):
            together = [grouped[r] / max(m[5][r] for m in peers) for r in range(rounds)]
            line += f", {ratio(together)} with similar lengths together"
        lines.append(line + " (goal 1.5x).")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--run-throughput", type=Path, help="a run of `infertune optimize minilm --objective "
                                                            "throughput`: its choice is a row too")
    parser.add_argument("--quick", action="store_true", help="short timing (a smoke run, not for quoting)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="measure every row N times in interleaved rounds; the table shows the medians and the "
                             "verdicts the median of the per-round ratios")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    timing = Timing(min_runs=5, min_seconds=0.2) if args.quick else Timing(min_runs=100, min_seconds=3.0)
    repeat = max(1, args.repeat)
    rows = peer_rows(args.run, args.run_throughput)
    model, dataset = resolve("minilm")
    split, data_name = dataset.split("heldout"), dataset.name
    reference = reference_outputs(model, split, 256)
    lines = ["| configuration | ran as | b1 p50 ms | b1 p99 ms | b32 items/s | b32 items/s, similar lengths together | "
             "mean cosine | top-10 agreement | meets the bar | b1 speed-up vs torch fp32 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    measured = []  # (label, ours, meets the bar, [b1 p50 ms], [b32 items/s], [b32 items/s grouped]), one per round
    with tempfile.TemporaryDirectory(prefix="infertune-peers-") as tmp:
        built, cache = [], {}  # every row built first (shared prefixes once), then measured round by round
        for i, (label, passes, backend, options) in enumerate(rows):
            print(f"   building {label}", file=sys.stderr, flush=True)
            artifact, _, _ = build(model, passes, dataset, Path(tmp), cache)
            built.append((label, artifact, backend, options, Path(tmp) / f"outputs-{i}.npz"))
        results: dict[str, list] = {label: [] for label, *_ in built}
        fids: dict[str, dict] = {}
        for r in range(repeat):
            for label, artifact, backend, options, outputs in built:
                if results[label] and not results[label][0].ok:
                    continue
                print(f"   round {r + 1}/{repeat}: {label}", file=sys.stderr, flush=True)
                result = measure("minilm", artifact, backend, options, (1, 32), timing, outputs if r == 0 else None,
                                 split, data_name)
                results[label].append(result)
                if result.ok and r == 0:
                    with np.load(outputs) as saved:
                        fids[label] = fidelity(reference, dict(saved), split.labels)
                if result.ok:
                    grouped = result.grouped_at(32)
                    print(f"      b1 p50 {result.at(1).p50_ms:.3f} ms, b32 {result.at(32).items_per_s:.0f} items/s, "
                          f"{grouped.items_per_s if grouped else float('nan'):.0f} grouped", file=sys.stderr,
                          flush=True)
    base = None
    for label, artifact, backend, options, outputs in built:
        each = results[label]
        if not each[0].ok:
            lines.append(f"| {label} | failed: {each[0].error} | | | | | | | | |")
            continue
        fid = fids[label]
        ok = [x for x in each if x.ok]
        p50 = [x.at(1).p50_ms for x in ok]
        p99 = [x.at(1).p99_ms for x in ok]
        b32 = [x.at(32).items_per_s for x in ok]
        grouped = [x.grouped_at(32).items_per_s for x in ok if x.grouped_at(32)]
        base = base or float(np.median(p50))
        meets = fid["cosine_mean"] >= BAR[0] and fid["neighbour_agreement_10"] >= BAR[1]
        lines.append(f"| {label} | {each[0].precision} | {np.median(p50):.3f} | {np.median(p99):.3f} | "
                     f"{np.median(b32):.0f} | {np.median(grouped) if grouped else float('nan'):.0f} | "
                     f"{fid['cosine_mean']:.4f} | {fid['neighbour_agreement_10']:.3f} | {'yes' if meets else 'no'} | "
                     f"{base / float(np.median(p50)):.2f}x |")
        print(lines[-1], flush=True)
        measured.append((label, label.startswith("infertune"), meets, p50, b32,
                         grouped if len(grouped) == len(p50) else None))
    lines += [""] + verdicts(measured)
    from benchmarks_common import header, replace_section

    how = (f"Every row measured in {repeat} interleaved rounds of this one run (each round measures every row "
           f"once, in table order): the table shows the medians." if repeat > 1 else "Every row measured in this "
                                                                                     "one run.")
    body = header("Peers", "benchmarks/peers.py", args.quick,
                  "MiniLM on the 512 held-out docstring sentences at natural length; quality against torch eager "
                  "fp32 on the first 256. The quality bar (PRODUCT.md): mean cosine >= 0.99 and top-10 neighbour "
                  "agreement >= 0.90. " + how) + lines
    replace_section(args.out, "\n".join(body) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""infertune's chosen MiniLM artifact against what users of the peer tools would run, side by side, in one run.

Rows: torch eager fp32; ONNX Runtime dynamic int8 configured as Optimum's avx512_vnni preset does it
(per-tensor QInt8 weights, unfused graph); OpenVINO + NNCF int8 (transformer scheme); torchao int8 dynamic
activations + int8 weights under torch.compile with freezing; and the recipe `infertune optimize` chose,
read from a run directory (default runs/demo, written by `make demo`). Each ONNX/OpenVINO row runs in a
fresh process; quality is against torch eager fp32 on the first 256 held-out sentences.

    .venv/bin/python benchmarks/peers.py [--run runs/demo] [--quick] [--out docs/benchmarks.md]
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


def peer_rows(run: Path):
    manifest = run / "model" / "manifest.json"
    if not manifest.is_file():
        raise SystemExit(f"no run directory at '{run}': run `make demo` first, or pass --run DIR")
    chosen = Recipe.from_dict(json.loads(manifest.read_text())["recipe"])
    return [
        ("torch eager fp32", [], "torch", {}),
        ("ONNX Runtime dynamic int8, Optimum avx512_vnni preset (per-tensor QInt8)",
         [ExportOnnx(), Int8Dynamic(per_channel=False)], "onnxruntime", {}),
        ("OpenVINO + NNCF int8 (transformer scheme)", [ExportOnnx(), Int8Nncf()], "openvino", {}),
        ("torchao int8 dyn-act/int8-weight + torch.compile (freezing)", [Int8Torchao()], "torch-compile", {}),
        (f"infertune optimize --max-drop 0.01 chose: {chosen.describe()}", list(chosen.passes), chosen.backend,
         chosen.backend_options),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--quick", action="store_true", help="short timing (a smoke run, not for quoting)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    timing = Timing(min_runs=5, min_seconds=0.2) if args.quick else Timing(min_runs=100, min_seconds=3.0)
    rows = peer_rows(args.run)
    model, dataset = resolve("minilm")
    split, data_name = dataset.split("heldout"), dataset.name
    reference = reference_outputs(model, split, 256)
    lines = ["| configuration | ran as | b1 p50 ms | b1 p99 ms | b32 items/s | mean cosine | top-10 agreement | "
             "meets the bar | b1 speed-up vs torch fp32 |", "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    base = None
    with tempfile.TemporaryDirectory(prefix="infertune-peers-") as tmp:
        for i, (label, passes, backend, options) in enumerate(rows):
            print(f"   {label}", file=sys.stderr, flush=True)
            artifact, _ = build(model, passes, dataset, Path(tmp), {})
            outputs = Path(tmp) / f"outputs-{i}.npz"
            result = measure("minilm", artifact, backend, options, (1, 32), timing, outputs, split, data_name)
            if not result.ok:
                lines.append(f"| {label} | failed: {result.error} | | | | | | | |")
                continue
            with np.load(outputs) as saved:
                fid = fidelity(reference, dict(saved), split.labels)
            a, b = result.at(1), result.at(32)
            base = base or a.p50_ms
            meets = fid["cosine_mean"] >= BAR[0] and fid["neighbour_agreement_10"] >= BAR[1]
            lines.append(f"| {label} | {result.precision} | {a.p50_ms:.3f} | {a.p99_ms:.3f} | {b.items_per_s:.0f} | "
                         f"{fid['cosine_mean']:.4f} | {fid['neighbour_agreement_10']:.3f} | {'yes' if meets else 'no'} | "
                         f"{base / a.p50_ms:.2f}x |")
            print(lines[-1], flush=True)
    from benchmarks_common import header, replace_section

    body = header("Peers", "benchmarks/peers.py", args.quick,
                  "MiniLM on the 512 held-out docstring sentences at natural length; quality against torch eager "
                  "fp32 on the first 256. The quality bar (PRODUCT.md): mean cosine >= 0.99 and top-10 neighbour "
                  "agreement >= 0.90. Every row measured in this one run.") + lines
    replace_section(args.out, "\n".join(body) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

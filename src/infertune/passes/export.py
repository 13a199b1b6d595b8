"""torch -> ONNX export with dynamic axes, checked against the source on real inputs.

Two exporters stay reachable: "torchscript" (`dynamo=False`), whose graphs ONNX Runtime's transformer
optimizer fuses fully, and "dynamo" (torch's default), which it fuses only partly.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
import hashlib
import io
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from infertune.errors import ConfigError, ExportError
from infertune.model.base import Model
from infertune.passes.registry import Checked, param, PassContext, PassOutput, register

EXPORTERS = ("torchscript", "dynamo")
# 17, not 18: at 18 ReduceL2 takes its axes as an input, which ONNX Runtime's symbolic shape inference does
# not follow, and without shapes its transformer optimizer fuses nothing past LayerNorm
OPSET = 17


def cache_dir() -> Path:
    from infertune.io import cache_root

    path = cache_root() / "onnx"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fingerprint(model: Model, exporter: str) -> str:
    """A key from the module's class, its weights' bytes and the exporter: a changed model re-exports."""
    import torch

    import inspect

    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{type(model.module).__qualname__}|{exporter}|{OPSET}|{torch.__version__}".encode())
    for cls in {type(m) for m in model.module.modules()}:  # a changed forward re-exports, same weights or not
        try:
            digest.update(inspect.getsource(cls).encode())
        except (OSError, TypeError):
            digest.update(cls.__qualname__.encode())
    digest.update(repr(model.signature).encode())
    for name, tensor in model.module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def validation_inputs(model: Model) -> list[dict[str, np.ndarray]]:
    """Real inputs where the model has a data set (two batches of different sizes and lengths), else random."""
    if model.default_data is not None:
        from infertune.data import load_dataset

        split = load_dataset(model.default_data).split("heldout")
        return [model.inputs_for(split, slice(0, 1)), model.inputs_for(split, slice(1, 6))]
    return [model.example_inputs(batch_size=1, sequence_length=7), model.example_inputs(batch_size=3, seed=1)]


def _dynamic_shapes(model: Model):
    import torch

    dims: dict[str, object] = {}
    shapes = []
    for spec in model.signature.inputs:
        axes = {}
        for axis, name in spec.dynamic_axes.items():
            if name not in dims:
                symbol = name.replace("-", "_")
                # BERT-style position tables bound the sequence; export needs that bound stated
                dims[name] = torch.export.Dim(symbol, max=512) if name == "sequence" else torch.export.Dim(symbol)
            axes[axis] = dims[name]
        shapes.append(axes)
    return tuple(shapes)


def _exportable(module):
    """Hugging Face models export with eager attention: the SDPA path hides the pattern that ONNX Runtime's
    optimizer fuses into its Attention operator. The user's module is not changed."""
    import copy

    if not any(hasattr(m, "set_attn_implementation") for m in module.modules()):
        return module
    module = copy.deepcopy(module)
    for sub in module.modules():
        if hasattr(sub, "set_attn_implementation") and getattr(sub, "config", None) is not None:
            if getattr(sub.config, "_attn_implementation", "eager") != "eager":
                sub.set_attn_implementation("eager")
    return module


def _export(model: Model, path: Path, exporter: str) -> None:
    import torch

    from infertune.quiet import quiet_third_party_logs

    quiet_third_party_logs()
    example = model.example_inputs(batch_size=2, sequence_length=16)
    args = tuple(torch.from_numpy(example[name]) for name in model.signature.input_names)
    names = dict(input_names=model.signature.input_names, output_names=model.signature.output_names,
                 opset_version=OPSET)
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            axes = {s.name: s.dynamic_axes for s in (*model.signature.inputs, *model.signature.outputs)}
            torch.onnx.export(_exportable(model.module), args, str(path), dynamo=False, dynamic_axes=axes, **names)
        else:
            program = torch.onnx.export(_exportable(model.module), args, dynamo=True, dynamic_shapes=_dynamic_shapes(model),
                                        **names)
            program.save(str(path))


def compare(model: Model, onnx_path: Path, inputs: list[dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Per output: the largest absolute difference and the smallest row cosine, source vs ONNX Runtime."""
    import onnxruntime as ort
    import torch

    from infertune.data.metrics import row_cosines

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    graph_inputs = {i.name for i in session.get_inputs()}
    report: dict[str, dict[str, float]] = {}
    for batch in inputs:
        with torch.inference_mode():
            result = model.module(*[torch.from_numpy(batch[n]) for n in model.signature.input_names])
        expected = result if isinstance(result, (tuple, list)) else (result,)
        got = session.run(model.signature.output_names, {k: v for k, v in batch.items() if k in graph_inputs})
        for name, want, have in zip(model.signature.output_names, expected, got):
            want = want.float().numpy().reshape(len(have), -1).astype(np.float64)
            have = have.reshape(len(have), -1).astype(np.float64)
            diff = float(np.max(np.abs(want - have))) if want.size else 0.0
            cosine = float(np.min(row_cosines(want, have))) if want.size else 1.0
            entry = report.setdefault(name, {"max_abs_diff": 0.0, "min_cosine": 1.0})
            entry["max_abs_diff"] = max(entry["max_abs_diff"], diff)
            entry["min_cosine"] = min(entry["min_cosine"], cosine)
    return report


def check(model: Model, onnx_path: Path, *, atol: float = 1e-4, min_cosine: float = 0.9999,
          inputs: list[dict[str, np.ndarray]] | None = None) -> dict[str, dict[str, float]]:
    """Raise ExportError naming the output and its difference when the export is off beyond tolerance."""
    try:
        report = compare(model, onnx_path, inputs or validation_inputs(model))
    except (RuntimeError, ValueError, TypeError) as e:  # ONNX Runtime cannot load or run what was exported
        raise ExportError(f"ONNX export of '{model.name}' does not run in ONNX Runtime: {str(e).splitlines()[0]}") from e
    for name, figures in report.items():
        if figures["max_abs_diff"] > atol or figures["min_cosine"] < min_cosine:
            raise ExportError(f"ONNX export of '{model.name}' differs from the source: output '{name}' "
                              f"max |diff| {figures['max_abs_diff']:.3g} (tolerance {atol:g}), min cosine "
                              f"{figures['min_cosine']:.6f} (needs >= {min_cosine}); the model may have "
                              f"data-dependent control flow that tracing froze: try exporter='dynamo'")
    return report


def export_onnx(model: Model, path: str | Path | None = None, *, exporter: str = "torchscript",
                atol: float = 1e-4, min_cosine: float = 0.9999,
                inputs: list[dict[str, np.ndarray]] | None = None) -> Model:
    """Export a torch model to ONNX with dynamic batch (and sequence) axes and validate it numerically.

    Without `path` the file goes to infertune's cache, keyed by the weights, so it is exported once.
    Returns the ONNX model, with the source's signature, task and tokenizer.
    Example: `export_onnx(load_model("minilm"), "minilm.onnx")`.
    """
    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter '{exporter}' is not one of {', '.join(EXPORTERS)}")
    if model.module is None:
        raise ConfigError(f"'{model.name}' is already an ONNX model: nothing to export")
    report = None
    if path is None:
        final = cache_dir() / _fingerprint(model, exporter) / "model.onnx"
        if not final.is_file():
            report = _export_checked(model, final, exporter, atol, min_cosine, inputs)
    else:
        final = Path(path)
        report = _export_checked(model, final, exporter, atol, min_cosine, inputs)
    return dataclasses.replace(model, module=None, onnx_path=final.resolve(),
                               meta={**model.meta, "exporter": exporter, "export_check": report})


def _export_checked(model: Model, final: Path, exporter: str, atol: float, min_cosine: float,
                    inputs: list[dict[str, np.ndarray]] | None) -> dict[str, dict[str, float]]:
    """Export into a temporary folder beside the target, validate, then move into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=final.parent))
    try:
        staged = staging / final.name
        try:
            _export(model, staged, exporter)
        except Exception as e:
            raise ExportError(f"ONNX export ({exporter}) of '{model.name}' failed: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from e
        report = check(model, staged, atol=atol, min_cosine=min_cosine, inputs=inputs)
        for item in staging.iterdir():  # the .onnx and any external-data file beside it
            os.replace(item, final.parent / item.name.replace(staged.name, final.name, 1))
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def onnx_bytes(path: Path) -> int:
    """Size on disk of an ONNX model with the external-data files its initializers name."""
    import onnx

    path = Path(path)
    proto = onnx.load(str(path), load_external_data=False)
    files = {entry.value for init in proto.graph.initializer if init.data_location == onnx.TensorProto.EXTERNAL
             for entry in init.external_data if entry.key == "location"}
    return path.stat().st_size + sum((path.parent / name).stat().st_size for name in files)


@dataclass(frozen=True)
class ExportOnnx(Checked):
    exporter: str = param("torchscript", "torchscript (dynamo=False; fuses fully in ONNX Runtime) or dynamo",
                          search=("torchscript", "dynamo"), choices=EXPORTERS)


@register("export-onnx", ExportOnnx, formats=("torch",), stage="export", backends=("onnxruntime", "openvino"),
          makes="onnx", summary="torch -> ONNX, validated against the source")
def export_pass(model: Model, config: ExportOnnx, ctx: PassContext) -> PassOutput:
    calibration = ctx.split("calibration")
    inputs = None
    if calibration is not None:
        from infertune.passes.onnx_utils import sample_batches

        inputs = sample_batches(model, calibration, count=8, batch=4)
    exported = export_onnx(model, ctx.workdir / "model.onnx", exporter=config.exporter, inputs=inputs)
    report = exported.meta["export_check"]
    worst = max(report.items(), key=lambda kv: kv[1]["max_abs_diff"])
    return PassOutput(exported, notes=[f"exported with {config.exporter}; output '{worst[0]}' max |diff| "
                                       f"{worst[1]['max_abs_diff']:.2g}, min cosine {worst[1]['min_cosine']:.6f}"])


"""The chosen artifact in DIR/model: the ONNX file or OpenVINO IR copied in, or, for a PyTorch artifact,
the recipe that rebuilds it from the source model (deterministic passes); `manifest.json` says which.
`infertune.resolve(DIR)` reads it back."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from infertune.io import write_json_atomic
from infertune.model.run_dir import MANIFEST, Manifest
from infertune.model.spec import ModelSpec
from infertune.search.records import TrialRecord


def save_artifact(directory: Path, *, model, record: TrialRecord) -> None:
    """Write DIR/model for the candidate `record` of `model` (the search's source model)."""
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    file = None
    path = record.artifact
    if path:
        src = Path(path)
        for item in src.parent.iterdir():  # the graph and its weights (.onnx + .data, or .xml + .bin)
            if item.name.startswith(src.stem):
                shutil.copy2(item, staging / item.name)
        file = src.name
    manifest = Manifest(spec=_portable(model.spec), recipe=record.recipe, backend=record.backend,
                        options={k: v for k, v in record.recipe["backend"].items() if k != "name"}, file=file,
                        name=model.name, task=model.task, labels=model.labels)
    write_json_atomic(staging / MANIFEST, manifest.to_dict())
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def _portable(spec: ModelSpec) -> ModelSpec:
    """Local paths made absolute, so the run directory loads from any working directory."""
    changes = {}
    if Path(spec.model).expanduser().exists():
        changes["model"] = str(Path(spec.model).expanduser().resolve())
    if spec.weights is not None and Path(spec.weights).exists():
        changes["weights"] = str(Path(spec.weights).resolve())
    return dataclasses.replace(spec, **changes) if changes else spec
